"""Per-channel reference envelopes (MVC or another reference contraction), saved as YAML;
``emg-msk calibrate`` makes one from session bags.

The reference of a channel is a high percentile (default the 99th) of its conditioned,
unnormalised envelope over a calibration recording: robust to a single spike, unlike the
maximum. Excitation = envelope / reference, clipped to [0, 1].

Optionally, each channel's resting level: the median envelope over a recording with the muscles
relaxed (electrode noise floor plus resting tone). The learning path removes it from the
excitation (:mod:`emg_msk_ros.learning.dataset`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from emg_msk_ros.signal.conditioner import Conditioner
from emg_msk_ros.signal.config import ConditioningSettings, ConfigError, load_settings

SCHEMA = "emg_msk_ros/calibration/1"
# A reference below this is no signal (a flat channel's envelope is ~1e-19 V after filtering);
# real surface EMG noise floors are around 1 µV.
MIN_REFERENCE_V = 1e-9


@dataclass(frozen=True)
class Calibration:
    """Reference envelope (V) per channel, and the conditioning it was measured with."""

    references: dict[str, float]  # channel -> envelope (V) that maps to excitation 1
    conditioning: dict[str, Any]  # ConditioningSettings.envelope_signature() at calibration
    percentile: float = 99.0
    source: str = ""  # the recording it came from
    notes: tuple[str, ...] = field(default_factory=tuple)  # quality problems seen
    rest: dict[str, float] = field(default_factory=dict)  # channel -> resting envelope (V)

    def __post_init__(self) -> None:
        for name, value in self.references.items():
            if not (np.isfinite(value) and value > MIN_REFERENCE_V):
                raise ConfigError(
                    f"{self._label}: channel {name} has reference {value!r} V; it must be "
                    f"> {MIN_REFERENCE_V:g} V (flat or missing signal?)"
                )
        for name, value in self.rest.items():
            if name not in self.references:
                raise ConfigError(f"{self._label}: rest level for channel {name}, which has "
                                  "no reference")
            if not (np.isfinite(value) and 0.0 <= value < self.references[name]):
                raise ConfigError(
                    f"{self._label}: channel {name} has rest level {value!r} V; it must be "
                    f">= 0 and below its reference {self.references[name]:g} V")

    @property
    def _label(self) -> str:
        return f"calibration from {self.source}" if self.source else "calibration"

    def reference_for(self, channel_names: Sequence[str]) -> np.ndarray:
        """References (V) in the order of ``channel_names``; every channel must be calibrated."""
        missing = [name for name in channel_names if name not in self.references]
        if missing:
            raise ConfigError(
                f"{self._label} has no reference for channel(s) {', '.join(missing)}; "
                f"it covers {', '.join(self.references)}"
            )
        return np.array([self.references[name] for name in channel_names], dtype=np.float64)

    def rest_excitation_for(self, channel_names: Sequence[str]) -> np.ndarray | None:
        """Resting levels as excitations (rest / reference, (C,)) in the order of
        ``channel_names``; None when the calibration has none. All channels or none."""
        if not self.rest:
            return None
        missing = [name for name in channel_names if name not in self.rest]
        if missing:
            raise ConfigError(f"{self._label} has no rest level for channel(s) "
                              f"{', '.join(missing)}")
        return np.array([self.rest[n] / self.references[n] for n in channel_names])

    def check_settings(self, settings: ConditioningSettings) -> None:
        """Refuse settings whose filters would change the envelope's scale."""
        current = settings.envelope_signature()
        if current != self.conditioning:
            changed = sorted(key for key in current if current[key] != self.conditioning.get(key))
            raise ConfigError(
                f"{self._label} was measured with different conditioning "
                f"({', '.join(changed)}: {self.conditioning.get(changed[0])} then, "
                f"{current[changed[0]]} now); recompute it with the current settings"
            )

    def to_mapping(self) -> dict[str, Any]:
        """The YAML document (plain types)."""
        return {
            "schema": SCHEMA,
            "source": self.source,
            "percentile": float(self.percentile),
            "references_v": {name: float(v) for name, v in self.references.items()},
            "conditioning": self.conditioning,
            "notes": list(self.notes),
            **({"rest_v": {name: float(v) for name, v in self.rest.items()}} if self.rest else {}),
        }

    def save(self, path: str | Path) -> Path:
        """Write the calibration as YAML; return the path."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_mapping(), sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration written by :meth:`save`; errors name the file and field."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ConfigError(f"{path}: not a calibration file (expected schema: {SCHEMA})")
        for key in ("references_v", "conditioning"):
            if not isinstance(data.get(key), dict) or not data[key]:
                raise ConfigError(f"{path}: field {key} must be a non-empty mapping")
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str) -> Calibration:
        """A calibration from its YAML document (:meth:`to_mapping`); errors name ``where``."""
        volts = {}
        for key in ("references_v", "rest_v"):
            try:
                volts[key] = {str(k): float(v) for k, v in (data.get(key) or {}).items()}
            except (AttributeError, TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {key} must map channel names to volts") from exc
        return cls(references=volts["references_v"], conditioning=data["conditioning"],
                   percentile=float(data.get("percentile", 99.0)),
                   source=str(data.get("source", "")), notes=tuple(data.get("notes") or ()),
                   rest=volts["rest_v"])


def rest_levels(emg: np.ndarray, sample_rate: float, channel_names: Sequence[str],
                settings: ConditioningSettings) -> dict[str, float]:
    """Resting level (V) of each channel: the median unnormalised envelope over a recording
    (n, channels; V) with the muscles relaxed, after the filters' first 20 % (start-up)."""
    conditioner = Conditioner(settings, sample_rate, list(channel_names), unnormalised=True)
    envelope = conditioner.process(emg, 0).excitation
    settled = envelope[len(envelope) // 5:]
    if len(settled) == 0:
        raise ConfigError("the rest recording is too short to measure a resting level")
    return {name: float(v) for name, v in zip(channel_names, np.median(settled, axis=0))}


MIN_CALIBRATION_S = 1.0  # s of EMG a calibration recording needs at least


def compute_calibration(emg: np.ndarray, sample_rate: float, channel_names: Sequence[str],
                        settings: ConditioningSettings, *, source: str = "") -> Calibration:
    """Reference envelopes from a calibration recording (n, channels; V, at ``sample_rate`` Hz).

    Each channel's reference is the ``settings.normalisation.percentile`` percentile of its
    envelope (same causal chain as the conditioner, without normalisation). A recording
    shorter than ``MIN_CALIBRATION_S`` is refused: its envelope is mostly the filters' start-up.
    """
    seconds = np.asarray(emg).shape[0] / sample_rate
    if seconds < MIN_CALIBRATION_S:
        raise ConfigError(f"{source or 'the calibration recording'}: {seconds:.3g} s of EMG; "
                          f"a calibration needs at least {MIN_CALIBRATION_S:g} s")
    conditioner = Conditioner(settings, sample_rate, list(channel_names), unnormalised=True)
    out = conditioner.process(emg, 0)
    percentile = settings.normalisation.percentile
    values = np.percentile(out.excitation, percentile, axis=0)
    invalid = [f"channel {name}: {count} invalid sample(s) replaced"
               for name, count in out.report.invalid.items()]
    notes = tuple(invalid + conditioner.quality.summary())
    return Calibration(
        references={name: float(v) for name, v in zip(channel_names, values)},
        conditioning=settings.envelope_signature(),
        percentile=percentile,
        source=source,
        notes=notes,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``emg-msk calibrate``."""
    parser.add_argument("--mvc", required=True, metavar="SESSION",
                        help="session bag of the reference (MVC) contractions")
    parser.add_argument("--rest", metavar="SESSION",
                        help="session bag recorded with the muscles relaxed (rest levels)")
    parser.add_argument("--out", required=True, help="calibration YAML to write")
    parser.add_argument("--conditioning", help="conditioning YAML (default "
                        "config/conditioning.yaml; must be the one the model uses)")


def run(args: argparse.Namespace) -> int:
    """Measure and save the calibration; errors are printed with what is wrong."""
    from emg_msk_ros.io.session_bag import SessionError, read_recording

    try:
        settings = load_settings(args.conditioning)
        mvc = read_recording(args.mvc)
        names = list(mvc.channel_names)
        calibration = compute_calibration(mvc.emg, mvc.sample_rate, names, settings,
                                          source=str(args.mvc))
        if args.rest:
            rest = read_recording(args.rest)
            missing = [name for name in names if name not in rest.channel_names]
            if missing:
                raise ConfigError(f"{args.rest} lacks channel(s) {', '.join(missing)} of "
                                  f"{args.mvc}")
            emg = rest.emg[:, [rest.channel_names.index(name) for name in names]]
            calibration = dataclasses.replace(
                calibration, source=f"{args.mvc}; rest {args.rest}",
                rest=rest_levels(emg, rest.sample_rate, names, settings))
        path = calibration.save(args.out)
    except (ConfigError, SessionError, FileNotFoundError) as exc:
        print(f"emg-msk calibrate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    rest = calibration.rest_excitation_for(names)
    for i, name in enumerate(names):
        line = f"  {name}: reference {calibration.references[name] * 1e6:.1f} uV"
        if rest is not None:
            line += f", rest {calibration.rest[name] * 1e6:.2f} uV ({rest[i]:.3f} of it)"
        print(line)
    for note in calibration.notes:
        print(f"  note: {note}")
    return 0
