"""Streaming and offline EMG conditioning (numpy/scipy, causal, stateful).

``Conditioner`` turns raw EMG chunks (V) into excitation 0..1 at the model rate;
``condition_offline`` / ``condition_recording`` run the same code over a whole recording.
"""

from emg_msk_ros.signal.calibration import Calibration, compute_calibration
from emg_msk_ros.signal.conditioner import (
    ChunkReport,
    Conditioner,
    ConditionerOutput,
    StreamFormatError,
    condition_offline,
    condition_recording,
)
from emg_msk_ros.signal.config import ConditioningSettings, ConfigError, load_settings

__all__ = [
    "Calibration",
    "ChunkReport",
    "Conditioner",
    "ConditionerOutput",
    "ConditioningSettings",
    "ConfigError",
    "StreamFormatError",
    "compute_calibration",
    "condition_offline",
    "condition_recording",
    "load_settings",
]
