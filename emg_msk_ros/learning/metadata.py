"""A model folder's ``model.yaml``: its schema and file names, and reading it with every field
validated, without torch (the conditioner node needs the settings and calibration a model was
trained with, not its network). :mod:`emg_msk_ros.learning.runtime` adds the served network
(``model.onnx``), :mod:`emg_msk_ros.learning.export` the training checkpoint (``model.pt``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emg_msk_ros.learning.settings import receptive_field
from emg_msk_ros.physics.preset import Preset, PresetError, parse_preset
from emg_msk_ros.signal.calibration import Calibration
from emg_msk_ros.signal.config import ConditioningSettings, ConfigError

SCHEMA = "emg_msk_ros/model/1"
WEIGHTS_FILE = "model.pt"
ONNX_FILE = "model.onnx"
META_FILE = "model.yaml"
# model.yaml ``kind``: the EMG-only PI-CNN (also when the field is absent, as in models written
# before the state-aided kind) and the state-aided PI-CNN (EMG plus measured joint state in,
# joint predicted ``ahead``; fields ``ahead`` and ``joint_state_input``)
KIND_EMG = "emg"
KIND_STATE_AIDED = "state_aided"
JOINT_STATE_ROWS = ["angle", "velocity"]
STATE_CHANNELS = len(JOINT_STATE_ROWS)  # rows of the state-aided model's joint_state input


def ahead_steps(horizon_ms: float, model_rate: float) -> int:
    """Model steps of a prediction horizon (ms); ValueError unless it is a whole number >= 0."""
    steps = horizon_ms * model_rate / 1000.0
    if not horizon_ms >= 0 or abs(steps - round(steps)) > 1e-6:
        raise ValueError(f"the horizon must be a whole number >= 0 of model steps "
                         f"({1000.0 / model_rate:g} ms at {model_rate:g} Hz), got {horizon_ms} ms")
    return round(steps)


class ModelError(ValueError):
    """A model directory that cannot be used; the message names the file and the field."""


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelMeta:
    """A model folder's validated model.yaml."""

    path: Path
    meta: dict[str, Any]  # the validated model.yaml
    preset: Preset  # rebuilt from the embedded document
    conditioning: ConditioningSettings
    calibration: Calibration


class Fields:
    """Typed access to model.yaml fields with errors naming the file and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, problem: str):
        raise ModelError(f"{self.where}: field {field!r}: {problem}")

    def get(self, mapping: Mapping, field: str, kind: type | tuple, parent: str = "") -> Any:
        name = f"{parent}.{field}" if parent else field
        if field not in mapping:
            self.fail(name, "is missing")
        value = mapping[field]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            expected = (kind.__name__ if isinstance(kind, type)
                        else "/".join(k.__name__ for k in kind))
            self.fail(name, f"must be {expected}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(name, f"must be finite, got {value!r}")
        return value

    def positive(self, mapping: Mapping, field: str, kind: type, parent: str = "") -> Any:
        value = self.get(mapping, field, kind, parent)
        if value <= 0:
            self.fail(f"{parent}.{field}" if parent else field, f"must be > 0, got {value!r}")
        return value

    def names(self, mapping: Mapping, field: str) -> list[str]:
        value = self.get(mapping, field, list)
        if not value or not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(
                value):
            self.fail(field, f"must be a non-empty list of unique names, got {value!r}")
        return value

    def numbers(self, mapping: Mapping, field: str, parent: str, length: int) -> list[float]:
        value = self.get(mapping, field, list, parent)
        if len(value) != length or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in value):
            self.fail(f"{parent}.{field}",
                      f"must be a list of {length} finite numbers, got {value!r}")
        return [float(v) for v in value]


def read_checked_file(folder: Path, meta: Mapping, section: str, hint: str = "") -> bytes:
    """The bytes of the file that model.yaml's ``section`` ({file, bytes, sha256}) names, after
    checking its name (inside ``folder``), size and sha256; :class:`ModelError` naming the file
    and the field otherwise, ending with ``hint`` (what to do about it) when given."""
    check = Fields(str(folder / META_FILE))
    entry = check.get(meta, section, dict)
    name = check.get(entry, "file", str, section)
    size = check.get(entry, "bytes", int, section)
    digest = check.get(entry, "sha256", str, section)
    if Path(name).name != name:
        check.fail(f"{section}.file", f"must be a file name inside the model folder, got {name!r}")
    file = folder / name
    end = f"; {hint}" if hint else ""
    if not file.is_file():
        raise ModelError(f"{file}: missing (named by {folder / META_FILE} field "
                         f"'{section}.file'){end}")
    data = file.read_bytes()
    if len(data) != size:
        raise ModelError(f"{file}: truncated or altered: {len(data)} bytes, model.yaml field "
                         f"'{section}.bytes' says {size}{end}")
    if sha256_of(data) != digest:
        raise ModelError(f"{file}: corrupt: its sha256 differs from model.yaml field "
                         f"'{section}.sha256'{end}")
    return data


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not path.is_dir():
        raise ModelError(f"{path}: no such model folder")
    if not meta_path.is_file():
        raise ModelError(f"{meta_path}: missing (a model folder holds {META_FILE}, {ONNX_FILE} "
                         f"and {WEIGHTS_FILE}, as written by emg-msk train)")
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: must be a YAML mapping, got {type(meta).__name__}")
    if meta.get("schema") != SCHEMA:
        raise ModelError(f"{meta_path}: field 'schema': schema version mismatch: the file has "
                         f"{meta.get('schema')!r}, this emg_msk_ros reads {SCHEMA!r}; retrain "
                         "the model or use the emg_msk_ros version that wrote it")
    return meta


def read_model_meta(path: str | Path) -> ModelMeta:
    """Read and validate a model folder's model.yaml (not its weights); raises
    :class:`ModelError` naming file and field."""
    path = Path(path)
    meta = _read_meta(path)
    check = Fields(str(path / META_FILE))
    channels = check.names(meta, "channel_names")
    muscles = check.names(meta, "muscles")
    joint = check.get(meta, "joint", str)
    preset_meta = check.get(meta, "preset", dict)
    try:
        preset = parse_preset(check.get(preset_meta, "document", dict, "preset"),
                              f"{path / META_FILE} field 'preset.document'")
    except PresetError as exc:
        raise ModelError(str(exc)) from exc
    if list(preset.channel_names) != channels:
        check.fail("channel_names",
                   f"{channels} differ from the preset's {list(preset.channel_names)}")
    if list(preset.muscle_names) != muscles:
        check.fail("muscles", f"{muscles} differ from the preset's {list(preset.muscle_names)}")
    if preset.joint.name != joint:
        check.fail("joint", f"{joint!r} differs from the preset's {preset.joint.name!r}")
    check.positive(meta, "sample_rate", float)
    model_rate = check.positive(meta, "model_rate", float)
    window = check.positive(meta, "window", int)
    horizon = check.positive(meta, "horizon", int)
    arch = check.get(meta, "architecture", dict)
    kernel = check.positive(arch, "kernel", int, "architecture")
    levels = check.positive(arch, "levels", int, "architecture")
    check.positive(arch, "hidden", int, "architecture")
    if not 3 <= horizon < window:
        check.fail("horizon", f"must be in 3..window-1 ({window - 1}), got {horizon}")
    if window != receptive_field(kernel, levels) - 1 + horizon:
        check.fail("window", f"{window} does not match architecture (kernel {kernel}, levels "
                   f"{levels}) and horizon {horizon}")
    try:
        conditioning = ConditioningSettings.from_mapping(check.get(meta, "conditioning", dict))
    except ConfigError as exc:
        check.fail("conditioning", str(exc))
    if conditioning.output_rate_hz != model_rate:
        check.fail("conditioning.output_rate_hz",
                   f"{conditioning.output_rate_hz} Hz differs from model_rate {model_rate} Hz")
    cal = check.get(meta, "calibration", dict)
    check.get(cal, "references_v", dict, "calibration")
    check.get(cal, "conditioning", dict, "calibration")
    try:
        calibration = Calibration.from_mapping(cal, "calibration")
        calibration.reference_for(channels)
        calibration.check_settings(conditioning)
    except (ConfigError, TypeError, ValueError) as exc:
        check.fail("calibration", str(exc))
    norm = check.get(meta, "normalisation", dict)
    check.numbers(norm, "force_n", "normalisation", len(muscles))
    baseline = check.numbers(norm, "excitation_baseline", "normalisation", len(channels))
    if not all(0.0 <= b < 1.0 for b in baseline):
        check.fail("normalisation.excitation_baseline", f"must be in [0, 1), got {baseline}")
    kind = meta.get("kind", KIND_EMG)
    if kind not in (KIND_EMG, KIND_STATE_AIDED):
        check.fail("kind", f"must be {KIND_EMG} or {KIND_STATE_AIDED}, got {kind!r}")
    if kind == KIND_STATE_AIDED:
        ahead = check.get(meta, "ahead", dict)
        steps = check.get(ahead, "steps", int, "ahead")
        horizon_ms = check.get(ahead, "horizon_ms", float, "ahead")
        try:
            expected = ahead_steps(horizon_ms, model_rate)
        except ValueError as exc:
            check.fail("ahead.horizon_ms", str(exc))
        if steps != expected:
            check.fail("ahead.steps", f"{steps} differs from horizon_ms {horizon_ms} at "
                       f"{model_rate:g} Hz ({expected} steps)")
        rows = check.get(check.get(meta, "joint_state_input", dict), "rows", list,
                         "joint_state_input")
        if rows != JOINT_STATE_ROWS:
            check.fail("joint_state_input.rows", f"must be {JOINT_STATE_ROWS}, got {rows!r}")
    learned = check.get(check.get(meta, "physics", dict), "learned", dict, "physics")
    for name in learned:
        check.numbers(learned, name, "physics.learned", len(muscles))
    return ModelMeta(path=path, meta=meta, preset=preset, conditioning=conditioning,
                     calibration=calibration)
