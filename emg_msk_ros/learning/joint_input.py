"""The exoskeleton's measured joint state as a model input, aligned with the EMG by stamps.

The state-aided model (:mod:`.state_model`) reads, at every model-rate step, the joint angle
(rad) and velocity (rad/s) of the newest sensor reading whose stamp is at or before that step's
stamp (the stamp of the newest EMG sample behind the excitation): a sample-and-hold, so no
reading from after the EMG is ever used. Training, offline evaluation and the live node apply
this same rule (:func:`hold_at`), and the node refuses a reading older than its limit.
"""

from __future__ import annotations

import numpy as np

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.physics.encoder import EncoderSettings, measure_trajectory

# Velocity of a sensor that reports only an angle (a goniometer): differentiated and low-passed
# as the encoder does, at this cutoff (Hz) or a quarter of the sensor's rate, whichever is lower.
_VELOCITY_CUTOFF = 40.0


class JointStateError(ValueError):
    """A session or stream without a usable joint-state measurement."""


def measured_state(recording: Recording) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The joint sensor's readings of a session: (stamps s, angle rad, velocity rad/s).

    A simulated session's encoder readings when it has them; otherwise the recorded angle is the
    sensor (a real recording's goniometer), with its recorded velocity or, without one, a
    velocity differentiated from it as an encoder does (causal, :mod:`..physics.encoder`).
    """
    if recording.measured_time is not None:
        return recording.measured_time, recording.measured_angle, recording.measured_velocity
    if recording.angle is None:
        raise JointStateError("the session has no joint-state measurement (topic joint_states)")
    if recording.velocity is not None:
        return recording.kin_time, recording.angle, recording.velocity
    steps = np.diff(recording.kin_time)
    if len(steps) < 1 or not np.all(steps > 0):
        raise JointStateError("the joint-state stamps must increase")
    rate = 1.0 / float(np.median(steps))
    settings = EncoderSettings(rate=rate, resolution=0.0, noise=0.0,
                               velocity_cutoff=min(_VELOCITY_CUTOFF, rate / 4))
    # one reading per recorded sample (resolution and noise 0: the angle passes unchanged)
    _, _, velocity = measure_trajectory(np.arange(len(steps) + 1) / rate, recording.angle,
                                        settings, np.random.default_rng(0))
    return recording.kin_time, recording.angle, velocity


def hold_at(stamps: np.ndarray, values: np.ndarray, times: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """The newest reading at or before each time: (values (m, d), age s (m,)).

    ``stamps`` (r,) s increasing, ``values`` (r, d), ``times`` (m,) s. Where no reading precedes
    a time, its row is NaN and its age infinite.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).reshape(len(stamps), -1)
    times = np.asarray(times, dtype=np.float64)
    # 1 ns tolerance: stamps and times are integer ns in the live graph, floats offline
    index = np.searchsorted(stamps, times + 1e-9, side="right") - 1
    held = np.full((len(times), values.shape[1]), np.nan)
    age = np.full(len(times), np.inf)
    ok = index >= 0
    held[ok] = values[index[ok]]
    age[ok] = times[ok] - stamps[index[ok]]
    return held, age
