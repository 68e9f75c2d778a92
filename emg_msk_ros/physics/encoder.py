"""What an exoskeleton's joint sensor reports: a sampled, quantised, slightly noisy angle and a
velocity differentiated from it, as a ros2_control joint_state_broadcaster would publish.

The simulator's ground truth is the joint's true state; an exoskeleton never sees that. Both
the state-aided estimator's training data and the simulated wearer's device measure the joint
through :class:`JointEncoder`, so models learn from what hardware gives them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class EncoderSettings:
    """Joint sensor settings: ``rate`` Hz (the broadcaster's publish rate), ``resolution`` rad
    per count (14-bit absolute encoder by default), ``noise`` rad RMS added before quantising,
    ``velocity_cutoff`` Hz of the one-pole low-pass on the differentiated angle."""

    rate: float = 500.0
    resolution: float = 2 * math.pi / 2 ** 14
    noise: float = 2e-4
    velocity_cutoff: float = 40.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"encoder rate must be > 0 Hz, got {self.rate}")
        if not self.resolution >= 0:
            raise ValueError(f"encoder resolution must be >= 0 rad, got {self.resolution}")
        if not self.noise >= 0:
            raise ValueError(f"encoder noise must be >= 0 rad, got {self.noise}")
        if not 0 < self.velocity_cutoff < self.rate / 2:
            raise ValueError(f"velocity_cutoff must be in (0, {self.rate / 2:g}) Hz, "
                             f"got {self.velocity_cutoff}")

    def as_dict(self) -> dict:
        """Plain-type dictionary (for session metadata)."""
        return asdict(self)


class JointEncoder:
    """One joint's sensor, one reading at a time (call :meth:`read` at ``settings.rate``)."""

    def __init__(self, settings: EncoderSettings, rng: np.random.Generator) -> None:
        self.settings = settings
        self._rng = rng
        self._last_angle: float | None = None
        self._velocity = 0.0
        dt = 1.0 / settings.rate
        self._alpha = 1.0 - math.exp(-2 * math.pi * settings.velocity_cutoff * dt)

    def read(self, true_angle: float) -> tuple[float, float]:
        """The measured angle (rad, on the encoder's grid) and velocity (rad/s) for the joint
        at ``true_angle`` rad, one encoder period after the previous reading."""
        s = self.settings
        angle = true_angle + s.noise * self._rng.standard_normal()
        if s.resolution > 0:
            angle = s.resolution * round(angle / s.resolution)
        if self._last_angle is not None:
            raw = (angle - self._last_angle) * s.rate
            self._velocity += self._alpha * (raw - self._velocity)
        self._last_angle = angle
        return angle, self._velocity


def measure_trajectory(time: np.ndarray, angle: np.ndarray, settings: EncoderSettings,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder readings of a true trajectory ``angle`` (rad) sampled at ``time`` (s): the
    reading times (s, every 1/rate from ``time[0]``), measured angles (rad) and velocities
    (rad/s). The true angle is linearly interpolated at the reading times."""
    time = np.asarray(time, dtype=float)
    angle = np.asarray(angle, dtype=float)
    if time.ndim != 1 or time.shape != angle.shape or time.size < 2:
        raise ValueError("time and angle must be 1-D arrays of the same length >= 2")
    count = int(math.floor((time[-1] - time[0]) * settings.rate + 1e-9)) + 1
    stamps = time[0] + np.arange(count) / settings.rate
    truth = np.interp(stamps, time, angle)
    encoder = JointEncoder(settings, rng)
    readings = np.array([encoder.read(float(a)) for a in truth]).reshape(count, 2)
    return stamps, readings[:, 0], readings[:, 1]
