"""Generic delimited-text loader: EMG (and optionally a joint angle) picked out by a column map.

The file (optionally ``.gz``) has one header row of column names, then numeric rows (``nan``
for a missing value). The column map, usually a small YAML file, says which columns are EMG
channels and in which unit, how the time base is known, and where the angle is::

    emg: {RF: rf_mv, VM: vm_mv}      # channel name -> column header
    emg_unit: mV                     # V, mV or uV
    sample_rate_hz: 1000             # or time_column: t (uniformly sampled, time_unit s|ms)
    angle_column: knee_deg           # optional
    angle_unit: deg                  # deg or rad; flexion = angle_sign · value + angle_offset
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.signal.config import ConfigError, from_mapping

EMG_UNITS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}
TIME_UNITS = {"s": 1.0, "ms": 1e-3}
ANGLE_UNITS = {"deg": np.pi / 180.0, "rad": 1.0}
_DELIMITERS = (",", "\t", ";")


class CsvFormatError(ValueError):
    """A file or column map that cannot be read; the message names the file, line or column."""


@dataclass(frozen=True)
class CsvColumnMap:
    """Which columns hold what (see the module docstring)."""

    SECTION: ClassVar[str] = "column map"
    emg: dict[str, str]
    emg_unit: str = "V"
    sample_rate_hz: float | None = None
    time_column: str | None = None
    time_unit: str = "s"
    angle_column: str | None = None
    angle_unit: str = "deg"
    angle_sign: float = 1.0
    angle_offset: float = 0.0  # in angle_unit, added after the sign
    joint_name: str = "knee"
    delimiter: str | None = None  # None: guessed from the header row

    def __post_init__(self) -> None:
        choices = {"emg_unit": EMG_UNITS, "time_unit": TIME_UNITS, "angle_unit": ANGLE_UNITS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{self.SECTION}.{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if (self.sample_rate_hz is None) == (self.time_column is None):
            raise ConfigError(f"{self.SECTION}: give exactly one of sample_rate_hz and "
                              "time_column")
        if self.sample_rate_hz is not None and self.sample_rate_hz <= 0:
            raise ConfigError(f"{self.SECTION}.sample_rate_hz must be > 0 Hz, "
                              f"got {self.sample_rate_hz}")
        if self.angle_sign not in (1.0, -1.0):
            raise ConfigError(f"{self.SECTION}.angle_sign must be 1 or -1, got {self.angle_sign}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CsvColumnMap:
        """A column map from a mapping; unknown keys and wrong types are errors."""
        if not isinstance(data, Mapping) or "emg" not in data:
            raise ConfigError(f"{cls.SECTION} must be a mapping with an 'emg' entry")
        return from_mapping(cls, data, cls.SECTION)

    @classmethod
    def load(cls, path: str | Path) -> CsvColumnMap:
        """A column map from a YAML file."""
        try:
            return cls.from_mapping(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        except (ConfigError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def read_table(path: str | Path, delimiter: str | None = None) -> tuple[list[str], np.ndarray]:
    """Header names and the numeric rows (rows, columns) of a delimited text file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as stream:
        lines = stream.read().splitlines()
    if not lines:
        raise CsvFormatError(f"{path}: empty file")
    header_line = lines[0].lstrip("\ufeff")
    if delimiter is None:
        delimiter = max(_DELIMITERS, key=header_line.count)
    header = [name.strip().strip('"') for name in header_line.split(delimiter)]
    body = [line for line in lines[1:] if line.strip()]
    try:
        data = np.loadtxt(body, delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise CsvFormatError(f"{path}: bad data row (rows count from line 2): {exc}") from exc
    if data.shape[1] != len(header):
        raise CsvFormatError(
            f"{path}: {data.shape[1]} values per row but {len(header)} header names")
    return header, data


def column_values(header: list[str], data: np.ndarray, name: str, path: str | Path,
                  role: str) -> np.ndarray:
    """The column called ``name``; a missing column, or one without a single finite number, is
    an error naming ``role`` and the file."""
    if name not in header:
        raise CsvFormatError(f"{path}: no column {name!r} (for {role}); columns: "
                             f"{', '.join(header)}")
    values = data[:, header.index(name)]
    if not np.isfinite(values).any():
        raise CsvFormatError(f"{path}: column {name!r} (for {role}) holds no finite number")
    return values


def recording_from_table(header: list[str], data: np.ndarray, column_map: CsvColumnMap,
                         path: str | Path, metadata: dict[str, Any] | None = None) -> Recording:
    """Build a :class:`Recording` from table columns as the column map says."""
    path = Path(path)
    emg = np.column_stack([
        column_values(header, data, column, path, f"EMG channel {name}")
        for name, column in column_map.emg.items()
    ]) * EMG_UNITS[column_map.emg_unit]
    start_time = 0.0
    if column_map.time_column is not None:
        time = column_values(header, data, column_map.time_column, path, "time")
        time = time * TIME_UNITS[column_map.time_unit]
        step = np.diff(time)
        if step.size == 0 or not np.all(step > 0):
            raise CsvFormatError(f"{path}: time column {column_map.time_column!r} must increase")
        period = float(np.median(step))
        if np.max(np.abs(step - period)) > 0.01 * period:
            raise CsvFormatError(
                f"{path}: time column {column_map.time_column!r} is not uniformly sampled "
                f"(steps {step.min():.6g}..{step.max():.6g} s); resample it first")
        sample_rate, start_time = 1.0 / period, float(time[0])
    else:
        sample_rate = column_map.sample_rate_hz
    angle = kin_time = None
    if column_map.angle_column is not None:
        raw = column_values(header, data, column_map.angle_column, path, "angle")
        angle = (column_map.angle_sign * raw + column_map.angle_offset) \
            * ANGLE_UNITS[column_map.angle_unit]
        kin_time = start_time + np.arange(len(angle)) / sample_rate
    return Recording(
        emg=emg,
        sample_rate=sample_rate,
        channel_names=list(column_map.emg),
        start_time=start_time,
        joint_name=column_map.joint_name if angle is not None else None,
        kin_time=kin_time,
        angle=angle,
        metadata={"file": path.name, "source_units": {"emg": column_map.emg_unit},
                  **(metadata or {})},
    )


def load_csv(path: str | Path, column_map: CsvColumnMap | Mapping[str, Any]) -> Recording:
    """One delimited text file as a :class:`Recording`, as ``column_map`` describes."""
    if not isinstance(column_map, CsvColumnMap):
        column_map = CsvColumnMap.from_mapping(column_map)
    header, data = read_table(path, column_map.delimiter)
    return recording_from_table(header, data, column_map, path)
