"""One in-memory type for every EMG session: simulated, imported from a data set, or read from a bag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Recording:
    """Raw EMG plus whatever kinematics and ground truth the session has.

    EMG is sampled at ``sample_rate``; kinematics and muscle ground truth share one time base
    ``kin_time`` (s, same clock as ``start_time``), which may differ from the EMG rate.
    Optional fields are ``None`` when the session does not carry them.
    """

    emg: np.ndarray  # (n_samples, n_channels) raw EMG, volts
    sample_rate: float  # Hz
    channel_names: list[str]
    start_time: float = 0.0  # s, time of EMG sample 0
    joint_name: str | None = None
    kin_time: np.ndarray | None = None  # (m,) s
    angle: np.ndarray | None = None  # (m,) rad, flexion positive
    velocity: np.ndarray | None = None  # (m,) rad/s
    muscle_names: list[str] = field(default_factory=list)
    excitation: np.ndarray | None = None  # (m, n_muscles) 0..1, ground truth (simulation only)
    activation: np.ndarray | None = None  # (m, n_muscles) 0..1
    force: np.ndarray | None = None  # (m, n_muscles) N
    moment: np.ndarray | None = None  # (m, n_muscles) N·m about the joint
    metadata: dict[str, Any] = field(default_factory=dict)
    # The exoskeleton's joint sensor, when it differs from the ground truth above (simulated
    # sessions: an encoder's readings, :mod:`emg_msk_ros.physics.encoder`). Real recordings have
    # only the measurement, which is then both the label (``angle``) and the sensor reading.
    measured_time: np.ndarray | None = None  # (r,) s, reading stamps
    measured_angle: np.ndarray | None = None  # (r,) rad
    measured_velocity: np.ndarray | None = None  # (r,) rad/s

    def __post_init__(self) -> None:
        self.emg = np.asarray(self.emg, dtype=np.float64)
        if self.emg.ndim != 2:
            raise ValueError(f"emg must be (samples, channels), got shape {self.emg.shape}")
        if self.emg.shape[1] != len(self.channel_names):
            raise ValueError(
                f"emg has {self.emg.shape[1]} channels but {len(self.channel_names)} channel names"
            )
        if not self.sample_rate > 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {self.sample_rate}")
        if self.kin_time is not None:
            self.kin_time = np.asarray(self.kin_time, dtype=np.float64)
            m = self.kin_time.shape[0]
            for name in ("angle", "velocity"):
                value = getattr(self, name)
                if value is not None and np.shape(value) != (m,):
                    raise ValueError(f"{name} must have shape ({m},), got {np.shape(value)}")
            for name in ("excitation", "activation", "force", "moment"):
                value = getattr(self, name)
                if value is not None and np.shape(value) != (m, len(self.muscle_names)):
                    raise ValueError(
                        f"{name} must have shape ({m}, {len(self.muscle_names)}), "
                        f"got {np.shape(value)}"
                    )

        measured = (self.measured_time, self.measured_angle, self.measured_velocity)
        if any(v is not None for v in measured):
            if any(v is None for v in measured):
                raise ValueError("measured_time, measured_angle and measured_velocity go "
                                 "together")
            self.measured_time, self.measured_angle, self.measured_velocity = (
                np.asarray(v, dtype=np.float64) for v in measured)
            r = self.measured_time.shape
            if len(r) != 1 or self.measured_angle.shape != r or self.measured_velocity.shape != r:
                raise ValueError("measured_time, measured_angle and measured_velocity must be "
                                 "1-D arrays of one length")

    @property
    def duration(self) -> float:
        """Length of the EMG in s."""
        return self.emg.shape[0] / self.sample_rate

    @property
    def emg_time(self) -> np.ndarray:
        """Time of each EMG sample in s."""
        return self.start_time + np.arange(self.emg.shape[0]) / self.sample_rate

    @property
    def net_moment(self) -> np.ndarray | None:
        """Net muscle moment about the joint in N·m, when per-muscle moments are known."""
        return None if self.moment is None else self.moment.sum(axis=1)
