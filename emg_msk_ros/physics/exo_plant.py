"""A person wearing a one-joint exoskeleton, simulated in step with the clock (no ROS).

The person (:class:`~emg_msk_ros.physics.motor_control.Wearer`) tracks a target motion with
delayed feedback, co-contraction and adaptation to the device's torque; the joint moves under
the muscle moments plus the torque the actuator applies. What the devices would give the
outside world comes out as it would from hardware: raw EMG of every channel
(:mod:`emg_msk_ros.physics.synth_emg`, drawn before the run, the excitations applied as they
happen) and the joint encoder's readings (:class:`~emg_msk_ros.physics.encoder.JointEncoder`).

The actuator takes effort commands (N·m) and applies them after a transport ``delay`` through
a first-order lag of ``bandwidth`` Hz, clamped to ``torque_limit``; a command older than
``command_timeout`` s, or a non-finite one, counts as zero. The applied torque therefore stays
between zero and values that were commanded: the plant can only be more conservative than the
controller, never a way around its limits.

Everything is deterministic for a seed: the motor noise, EMG and encoder draw from separate
streams of ``numpy.random.default_rng([seed, stream])``.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.physics.encoder import EncoderSettings, JointEncoder
from emg_msk_ros.physics.motions import MotionSettings, Reference, excitation_noise
from emg_msk_ros.physics.motor_control import MotorSettings, Wearer
from emg_msk_ros.physics.preset import Preset
from emg_msk_ros.physics.synth_emg import EmgSynthSettings, draw_sources, electrode_gains

MOTOR_STREAM, EMG_STREAM, ENCODER_STREAM = 0, 1, 2


@dataclass(frozen=True)
class ActuatorSettings:
    """The exoskeleton's joint actuator: N·m, Hz, s."""

    torque_limit: float = 15.0  # the motor's peak torque
    bandwidth: float = 100.0  # Hz, first-order torque response (-3 dB)
    delay: float = 0.005  # s, transport delay from command to motor
    command_timeout: float = 0.25  # s without a command before the torque target is zero

    def __post_init__(self) -> None:
        for name in ("torque_limit", "bandwidth", "command_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"actuator {name} must be > 0, got {getattr(self, name)}")
        if not self.delay >= 0:
            raise ValueError(f"actuator delay must be >= 0 s, got {self.delay}")


class Actuator:
    """Transport delay, torque limit and first-order lag, advanced every ``dt`` s."""

    def __init__(self, settings: ActuatorSettings, dt: float) -> None:
        self.settings = settings
        self.dt = dt
        self._alpha = -math.expm1(-2 * math.pi * settings.bandwidth * dt)
        self._pending: collections.deque[tuple[float, float]] = collections.deque()
        self._target = 0.0
        self._target_since = -math.inf  # s, when the target's command took effect
        self.applied = 0.0
        self.rejected = 0  # non-finite commands

    def command(self, time: float, torque: float) -> None:
        """A command of ``torque`` N·m received at ``time`` s (plant time)."""
        if not math.isfinite(torque):
            self.rejected += 1
            torque = 0.0
        self._pending.append((time + self.settings.delay, float(torque)))

    def target(self, time: float) -> float:
        """The clamped torque target in force at ``time`` s."""
        while self._pending and self._pending[0][0] <= time:
            self._target_since, self._target = self._pending.popleft()
        if time - self._target_since > self.settings.command_timeout:
            return 0.0
        limit = self.settings.torque_limit
        return min(max(self._target, -limit), limit)

    def step(self, time: float) -> float:
        """The torque (N·m) applied over the step that starts at ``time`` s."""
        self.applied += self._alpha * (self.target(time) - self.applied)
        return self.applied


@dataclass(frozen=True)
class PlantSettings:
    """The simulated wearer and device. ``dt`` s is the integration step."""

    dt: float = 0.002  # the simulator's 1 ms gives the same motion; 2 ms halves the cost
    motion: MotionSettings = field(default_factory=lambda: MotionSettings(
        regime="mixed", max_speed=1.5))
    motor: MotorSettings = field(default_factory=lambda: MotorSettings(
        bandwidth=0.7, reaction_delay=0.12, adaptation_time=2.0, reflex_bandwidth=1.5,
        reflex_delay=0.04))
    actuator: ActuatorSettings = field(default_factory=ActuatorSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    emg: EmgSynthSettings = field(default_factory=EmgSynthSettings)


@dataclass
class PlantOutput:
    """What the devices produced during one :meth:`ExoPlant.advance`: EMG samples
    ``first_sample`` onwards (n, C) in V, and encoder readings (time s, angle rad, velocity
    rad/s)."""

    first_sample: int
    emg: np.ndarray
    readings: list[tuple[float, float, float]]


class ExoPlant:
    """The person tracking ``reference`` (step ``settings.dt``) in the exoskeleton."""

    def __init__(self, preset: Preset, reference: Reference, settings: PlantSettings,
                 seed: int, motor_rng: np.random.Generator | None = None) -> None:
        self.preset, self.reference, self.settings = preset, reference, settings
        dt, m = settings.dt, preset.muscles.count
        n = len(reference.theta)
        rng = motor_rng if motor_rng is not None else np.random.default_rng([seed, MOTOR_STREAM])
        noise = excitation_noise(rng, n, m, dt, settings.motion.excitation_noise)
        self.wearer = Wearer(preset, reference, dt, noise, settings.motion.tone, settings.motor)
        self.actuator = Actuator(settings.actuator, dt)
        self.encoder = JointEncoder(settings.encoder,
                                    np.random.default_rng([seed, ENCODER_STREAM]))
        fs = settings.emg.sample_rate
        self.emg_samples = int(math.floor((n - 1) * dt * fs)) + 1
        self.sources = draw_sources(np.random.default_rng([seed, EMG_STREAM]),
                                    self.emg_samples, m, 0.0, settings.emg)
        self._artifact_scale = max(float(np.abs(reference.alpha).max()), 1e-6)
        self.steps = 0
        self._emg_next = 0
        self._reading_next = 0
        self.log = {name: np.zeros(n) for name in ("angle", "velocity", "net_moment",
                                                   "exo_torque", "effort")}
        self.log["time"] = np.arange(n) * dt
        self.log["excitation"] = np.zeros((n, m))
        self.log["activation"] = np.zeros((n, m))
        self.log["moment"] = np.zeros((n, m))
        self.log["force"] = np.zeros((n, m))
        self.commands: list[tuple[float, float]] = []  # (time s, N·m) as received

    @property
    def duration(self) -> float:
        """Length of the target motion, s."""
        return len(self.reference.theta) * self.settings.dt

    @property
    def time(self) -> float:
        """Time (s) up to which the plant has been simulated."""
        return self.steps * self.settings.dt

    @property
    def done(self) -> bool:
        """The target motion has ended."""
        return self.wearer.done

    def command(self, time: float, torque: float) -> None:
        """An effort command (N·m) received at ``time`` s (not before the simulated time)."""
        time = max(time, self.time)
        self.commands.append((time, torque))
        self.actuator.command(time, torque)

    def advance(self, until: float) -> PlantOutput:
        """Simulate up to ``until`` s (or the motion's end); return what the devices gave."""
        log, dt = self.log, self.settings.dt
        start = self.steps
        while not self.wearer.done and self.steps * dt < until:
            i = self.steps
            exo = self.actuator.step(i * dt)
            u, step = self.wearer.step(exo)
            log["angle"][i], log["velocity"][i] = step.theta, step.omega
            log["excitation"][i], log["activation"][i] = u, step.activation
            log["moment"][i], log["force"][i] = step.moment, step.force
            log["net_moment"][i] = step.moment.sum()
            log["exo_torque"][i] = exo
            log["effort"][i] = float(np.dot(step.activation, step.activation))
            self.steps += 1
        return PlantOutput(self._emg_next, self._emg(start), self._readings())

    def _emg(self, start: int) -> np.ndarray:
        """EMG samples up to the last simulated step's time."""
        dt, fs = self.settings.dt, self.settings.emg.sample_rate
        last = self.steps - 1
        end = min(int(math.floor(last * dt * fs + 1e-9)) + 1, self.emg_samples) \
            if last >= 0 else 0
        first = self._emg_next
        if end <= first:
            return np.zeros((0, self.preset.muscles.count))
        t = np.arange(first, end) / fs
        lo = max(min(start, int(t[0] / dt)) - 1, 0)
        times = self.log["time"][lo:self.steps]
        excitation = self.log["excitation"][lo:self.steps]
        envelope = np.stack([np.interp(t, times, excitation[:, c])
                             for c in range(excitation.shape[1])], axis=1)
        velocity = self.log["velocity"][max(lo - 1, 0):self.steps]
        acceleration = np.gradient(velocity, dt) if velocity.size > 1 else np.zeros(1)
        level = np.minimum(np.abs(np.interp(t, self.log["time"][max(lo - 1, 0):self.steps],
                                            acceleration)) / self._artifact_scale, 1.0)
        self._emg_next = end
        return self.sources.compose(np.clip(envelope, 0.0, 1.0), level, first)

    def _readings(self) -> list[tuple[float, float, float]]:
        """Encoder readings due up to the last simulated step's time."""
        rate, dt = self.settings.encoder.rate, self.settings.dt
        out = []
        last_time = (self.steps - 1) * dt
        while self.steps > 0 and self._reading_next / rate <= last_time + 1e-12:
            t = self._reading_next / rate
            k = min(int(t / dt), self.steps - 1)
            near = slice(max(k - 1, 0), min(k + 2, self.steps))
            angle = float(np.interp(t, self.log["time"][near], self.log["angle"][near]))
            out.append((t, *self.encoder.read(angle)))
            self._reading_next += 1
        return out


def wearer_recording(preset: Preset, settings: PlantSettings, gains: np.ndarray) -> Recording:
    """A stand-in Recording with what :func:`~emg_msk_ros.learning.dataset.
    simulated_mvc_calibration` reads: the electrodes' ``gains``, EMG and motion settings."""
    return Recording(emg=np.zeros((1, len(preset.channel_names))),
                     sample_rate=settings.emg.sample_rate,
                     channel_names=list(preset.channel_names),
                     metadata={"emg_gain": [float(g) for g in gains],
                               "emg": settings.emg.as_dict(),
                               "motion": {"tone": settings.motion.tone}})


def wearer_gains(preset: Preset, settings: PlantSettings, seed: int) -> np.ndarray:
    """The electrode gains (V RMS at full excitation) of the plant with ``seed``, without
    building it (they are the first draw of its EMG stream)."""
    return electrode_gains(np.random.default_rng([seed, EMG_STREAM]),
                           len(preset.channel_names), settings.emg)
