"""Validated conditioning settings, built from a YAML mapping (``config/conditioning.yaml``).

Every section is a frozen dataclass; constructing one (directly or from a mapping) checks each
value and raises :class:`ConfigError` naming the option, e.g. ``conditioning.bandpass.low_hz``.
Checks that need the sample rate (Nyquist, exact decimation) happen when the filters are designed
(:func:`emg_msk_ros.signal.filters.design_filters`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid setting; the message names the option and the accepted values."""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint (float, int, str, bool, dict, X | None)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (hint,) = [option for option in options if option is not type(None)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if typing.get_origin(hint) is dict:
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"{where} must be a non-empty mapping, got {value!r}")
        return {_coerce(k, key_hint, f"{where} key"): _coerce(v, value_hint, f"{where}.{k}")
                for k, v in value.items()}
    raise TypeError(f"unsupported option type {hint!r} for {where}")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build the dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    Nested dataclass fields take nested mappings; missing keys keep their defaults. ``where`` is
    the option path used in error messages (e.g. ``"conditioning"``).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known options: {', '.join(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_mapping(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def _require(ok: bool, section: str, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{section}.{name} {rule}, got {value!r}")


def _one_of(section: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, section, name, value, f"must be one of {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class BandpassSettings:
    """Butterworth band-pass: cut-offs in Hz; the high cut-off is clipped below Nyquist."""

    SECTION: ClassVar[str] = "conditioning.bandpass"
    low_hz: float = 20.0
    high_hz: float = 450.0
    order: int = 4  # per edge: the band-pass has 2·order poles

    def __post_init__(self) -> None:
        _require(self.low_hz > 0, self.SECTION, "low_hz", self.low_hz, "must be > 0 Hz")
        _require(self.high_hz > self.low_hz, self.SECTION, "high_hz", self.high_hz,
                 f"must be above low_hz ({self.low_hz} Hz)")
        _require(1 <= self.order <= 8, self.SECTION, "order", self.order, "must be in 1..8")


@dataclasses.dataclass(frozen=True)
class NotchSettings:
    """IIR notch at the mains frequency (50 or 60 Hz; null disables) and optional harmonics."""

    SECTION: ClassVar[str] = "conditioning.notch"
    frequency_hz: float | None = 50.0
    harmonics: int = 1  # notches at k·frequency_hz for k = 1..harmonics (below the band-pass top)
    quality: float = 30.0  # Q = centre frequency / -3 dB width

    def __post_init__(self) -> None:
        _require(self.frequency_hz in (None, 50.0, 60.0), self.SECTION, "frequency_hz",
                 self.frequency_hz, "must be 50, 60 (mains, Hz) or null (no notch)")
        _require(1 <= self.harmonics <= 10, self.SECTION, "harmonics", self.harmonics,
                 "must be in 1..10")
        _require(self.quality > 0, self.SECTION, "quality", self.quality, "must be > 0")


@dataclasses.dataclass(frozen=True)
class EnvelopeSettings:
    """Butterworth low-pass applied to the rectified signal (linear envelope)."""

    SECTION: ClassVar[str] = "conditioning.envelope"
    cutoff_hz: float = 5.0
    order: int = 2

    def __post_init__(self) -> None:
        _require(self.cutoff_hz > 0, self.SECTION, "cutoff_hz", self.cutoff_hz, "must be > 0 Hz")
        _require(1 <= self.order <= 8, self.SECTION, "order", self.order, "must be in 1..8")


NORMALISATION_MODES = ("calibration", "running")


@dataclasses.dataclass(frozen=True)
class NormalisationSettings:
    """How the envelope (V) becomes excitation 0..1.

    ``calibration``: divide by each channel's reference (MVC) envelope from a
    :class:`~emg_msk_ros.signal.calibration.Calibration`; refused without one.
    ``running``: divide by the running peak of the envelope since the stream started (never
    below ``running_floor_v``); an opt-in estimate for when no calibration exists.
    """

    SECTION: ClassVar[str] = "conditioning.normalisation"
    mode: str = "calibration"
    running_floor_v: float = 2.0e-5  # V; the smallest reference the running estimate uses
    percentile: float = 99.0  # percentile of the calibration envelope taken as reference

    def __post_init__(self) -> None:
        _one_of(self.SECTION, "mode", self.mode, NORMALISATION_MODES)
        _require(self.running_floor_v > 0, self.SECTION, "running_floor_v",
                 self.running_floor_v, "must be > 0 V")
        _require(50.0 <= self.percentile <= 100.0, self.SECTION, "percentile", self.percentile,
                 "must be in 50..100")


BAD_SAMPLE_OUTPUTS = ("hold", "zero")


@dataclasses.dataclass(frozen=True)
class BadSampleSettings:
    """Invalid raw samples: NaN, ±Inf, or |x| above ``valid_abs_max_v``.

    They never enter the filters: the channel's last valid sample is used in their place. Each
    output whose raw block held an invalid sample is ``hold`` (the channel's previous output) or
    ``zero``.
    """

    SECTION: ClassVar[str] = "conditioning.bad_samples"
    output: str = "hold"
    valid_abs_max_v: float = 1.0  # V; surface EMG beyond this is an amplifier fault

    def __post_init__(self) -> None:
        _one_of(self.SECTION, "output", self.output, BAD_SAMPLE_OUTPUTS)
        _require(self.valid_abs_max_v > 0, self.SECTION, "valid_abs_max_v",
                 self.valid_abs_max_v, "must be > 0 V")


GAP_POLICIES = ("bridge", "reset")


@dataclasses.dataclass(frozen=True)
class GapSettings:
    """Jumps in ``first_sample_index``.

    A forward jump (dropped samples) up to ``max_bridge_s`` is bridged with policy ``bridge``
    (the last valid sample is held over the gap, so the filters stay continuous); longer gaps,
    or policy ``reset``, reset the filters at the new index. A backward jump up to
    ``max_bridge_s`` repeats samples already seen, which are dropped; a longer one is a
    restarted stream and resets.
    """

    SECTION: ClassVar[str] = "conditioning.gaps"
    policy: str = "bridge"
    max_bridge_s: float = 0.1

    def __post_init__(self) -> None:
        _one_of(self.SECTION, "policy", self.policy, GAP_POLICIES)
        _require(self.max_bridge_s >= 0, self.SECTION, "max_bridge_s", self.max_bridge_s,
                 "must be >= 0 s")


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """Flat-line and saturation detection over consecutive windows of raw samples.

    Flat: peak-to-peak over a window <= ``flat_ptp_v``. Saturated: a sample reaches
    ``saturation_v`` (the amplifier's input range, when known), or the window's extreme value
    is held for at least ``saturation_run_s`` in a row (an amplifier stuck at its rail; brief
    clipping of EMG peaks is found only through ``saturation_v``).
    """

    SECTION: ClassVar[str] = "conditioning.quality"
    window_s: float = 0.25
    flat_ptp_v: float = 2.0e-6
    saturation_v: float | None = None
    saturation_run_s: float = 0.008

    def __post_init__(self) -> None:
        _require(self.window_s > 0, self.SECTION, "window_s", self.window_s, "must be > 0 s")
        _require(self.flat_ptp_v >= 0, self.SECTION, "flat_ptp_v", self.flat_ptp_v,
                 "must be >= 0 V")
        _require(self.saturation_v is None or self.saturation_v > 0, self.SECTION,
                 "saturation_v", self.saturation_v, "must be > 0 V or null")
        _require(0 < self.saturation_run_s < self.window_s, self.SECTION, "saturation_run_s",
                 self.saturation_run_s, f"must be > 0 s and below window_s ({self.window_s} s)")


@dataclasses.dataclass(frozen=True)
class ConditioningSettings:
    """The whole conditioning chain: band-pass, notch, rectify, envelope, decimate, normalise."""

    SECTION: ClassVar[str] = "conditioning"
    bandpass: BandpassSettings = dataclasses.field(default_factory=BandpassSettings)
    notch: NotchSettings = dataclasses.field(default_factory=NotchSettings)
    envelope: EnvelopeSettings = dataclasses.field(default_factory=EnvelopeSettings)
    output_rate_hz: float = 100.0  # model rate; must divide the raw sample rate exactly
    normalisation: NormalisationSettings = dataclasses.field(
        default_factory=NormalisationSettings)
    bad_samples: BadSampleSettings = dataclasses.field(default_factory=BadSampleSettings)
    gaps: GapSettings = dataclasses.field(default_factory=GapSettings)
    quality: QualitySettings = dataclasses.field(default_factory=QualitySettings)

    def __post_init__(self) -> None:
        _require(self.output_rate_hz > 0, self.SECTION, "output_rate_hz", self.output_rate_hz,
                 "must be > 0 Hz")
        _require(self.envelope.cutoff_hz < self.output_rate_hz / 2, EnvelopeSettings.SECTION,
                 "cutoff_hz", self.envelope.cutoff_hz,
                 f"must be below half the output rate ({self.output_rate_hz / 2} Hz) to avoid "
                 "aliasing at decimation")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> ConditioningSettings:
        """Settings from a mapping shaped like ``config/conditioning.yaml``."""
        return from_mapping(cls, data, cls.SECTION)

    def to_mapping(self) -> dict[str, Any]:
        """A plain mapping that :meth:`from_mapping` turns back into equal settings."""
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> ConditioningSettings:
        """A copy with whole sections or options replaced, e.g. ``replace(output_rate_hz=50)``."""
        return dataclasses.replace(self, **sections)

    def envelope_signature(self) -> dict[str, Any]:
        """The options that set the envelope's scale; a calibration is valid only for these."""
        return {
            "bandpass": dataclasses.asdict(self.bandpass),
            "notch": dataclasses.asdict(self.notch),
            "envelope": dataclasses.asdict(self.envelope),
        }


def load_settings(path: str | Path | None = None) -> ConditioningSettings:
    """Read settings from a YAML file (default: the package's ``config/conditioning.yaml``).

    The file holds the mapping itself or a top-level ``conditioning:`` key.
    """
    if path is None:
        from emg_msk_ros.paths import config_path

        path = config_path("conditioning.yaml")
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if isinstance(data, Mapping) and set(data) == {"conditioning"}:
        data = data["conditioning"]
    try:
        return ConditioningSettings.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
