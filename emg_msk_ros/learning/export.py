"""Model directories: TorchScript weights (``model.pt``) plus ``model.yaml``, saved and validated.

``model.yaml`` (schema ``emg_msk_ros/model/1``) holds everything needed to use the weights on a
new stream and to reproduce them: channel names and order, raw sample rate (Hz), model rate
(Hz), window and horizon (steps), the conditioner settings and calibration, the output
normalisation, joint and muscles, the whole preset document, the physics settings and learned
parameters, the training command, seed, settings and data hash, and validation metrics.

:func:`read_model_dir` refuses a directory whose files are missing, truncated, corrupt
(checksum), of another schema version, or inconsistent with each other, with a
:class:`ModelError` that names the file and the field (model.yaml alone is read and checked by
:mod:`emg_msk_ros.learning.metadata`, which needs no torch).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from emg_msk_ros import __version__
from emg_msk_ros.learning.metadata import (
    KIND_EMG,
    KIND_STATE_AIDED,
    META_FILE,
    SCHEMA,
    WEIGHTS_FILE,
    Fields,
    ModelError,
    ModelMeta,
    read_model_meta,
    sha256_of,
)
from emg_msk_ros.learning.state_model import STATE_CHANNELS
from emg_msk_ros.physics.preset import Preset


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and str/float subclasses as plain YAML types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in {META_FILE}")


@contextlib.contextmanager
def torchscript() -> Iterator[None]:
    """Silence torch's deprecation notices for TorchScript, the format chosen for model.pt
    (self-contained, loads without the Python class, 1-thread latency in the
    performance floors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def preset_document(preset: Preset) -> dict[str, Any]:
    """The preset's YAML document, read back from the file it was loaded from."""
    if preset.path is None:
        raise ValueError(f"preset {preset.name!r} was not loaded from a file; cannot embed it")
    return yaml.safe_load(preset.path.read_text(encoding="utf-8"))


def save_model_dir(path: str | Path, model: torch.nn.Module, meta: Mapping[str, Any]) -> Path:
    """Write ``model.pt`` (TorchScript of ``model``) and ``model.yaml`` (``meta`` + weights info).

    ``path`` must not exist or be an empty folder. Returns the folder.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty; choose a new model folder")
    path.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with torchscript():
        torch.jit.save(torch.jit.script(model.eval()), buffer)
    weights = buffer.getvalue()
    (path / WEIGHTS_FILE).write_bytes(weights)
    document = {"schema": SCHEMA, "created_by": f"emg_msk_ros {__version__}",
                "torch_version": str(torch.__version__),
                "weights": {"file": WEIGHTS_FILE, "format": "torchscript",
                            "bytes": len(weights), "sha256": sha256_of(weights)}}
    document.update({key: value for key, value in meta.items() if key not in document})
    (path / META_FILE).write_text(yaml.safe_dump(plain(document), sort_keys=False),
                                  encoding="utf-8")
    return path


@dataclass(frozen=True)
class ModelDir(ModelMeta):
    """A validated model directory with its weights."""

    module: torch.jit.ScriptModule  # weights, eval mode (not frozen)


def _load_weights(path: Path, meta: dict, check: Fields) -> torch.jit.ScriptModule:
    weights = check.get(meta, "weights", dict)
    name = check.get(weights, "file", str, "weights")
    size = check.get(weights, "bytes", int, "weights")
    digest = check.get(weights, "sha256", str, "weights")
    file = path / name
    if Path(name).name != name:
        check.fail("weights.file", f"must be a file name inside the model folder, got {name!r}")
    if not file.is_file():
        raise ModelError(f"{file}: weights file missing (named by {path / META_FILE} "
                         "field 'weights.file')")
    data = file.read_bytes()
    if len(data) != size:
        raise ModelError(f"{file}: truncated or altered: {len(data)} bytes, model.yaml field "
                         f"'weights.bytes' says {size}")
    if sha256_of(data) != digest:
        raise ModelError(f"{file}: corrupt: its sha256 differs from model.yaml field "
                         "'weights.sha256'")
    try:
        with torchscript():
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure means an unusable file
        raise ModelError(f"{file}: not a loadable TorchScript module ({exc})") from exc
    return module.eval()


def read_model_dir(path: str | Path) -> ModelDir:
    """Load and validate a model folder: :func:`read_model_meta`, then the weights, checked
    against model.yaml; raises :class:`ModelError` naming file and field."""
    found = read_model_meta(path)
    path, meta = found.path, found.meta
    module = _load_weights(path, meta, Fields(str(path / META_FILE)))
    n_channels, n_muscles = len(meta["channel_names"]), len(meta["muscles"])
    window, horizon = meta["window"], meta["horizon"]
    inputs = [torch.zeros(1, n_channels, window)]
    expected = [(1, 1 + n_muscles, horizon)]
    if meta.get("kind", KIND_EMG) == KIND_STATE_AIDED:
        offsets = meta["ahead"]["steps"] + 1
        inputs.append(torch.zeros(1, STATE_CHANNELS, window))
        expected = [(1, offsets, horizon), (1, n_muscles, offsets, horizon)]
    shapes = " and ".join(str(tuple(x.shape)) for x in inputs)
    try:
        with torch.inference_mode():
            out = module(*inputs)
    except Exception as exc:  # noqa: BLE001 - the module does not accept the declared input
        raise ModelError(f"{path / WEIGHTS_FILE}: fails on {shapes} input declared by "
                         f"model.yaml ({exc})") from exc
    got = [tuple(o.shape) for o in (out if isinstance(out, tuple) else [out])]
    if got != expected:
        raise ModelError(f"{path / WEIGHTS_FILE}: outputs shape(s) {got}, model.yaml "
                         f"declares {expected}")
    return ModelDir(**vars(found), module=module)
