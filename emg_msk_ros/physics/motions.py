"""Varied, physically consistent motions: a random reference, tracked by the muscles.

A reference theta_ref(t) is drawn as a chain of minimum-jerk pieces: point-to-point moves,
flexion-extension cycles whose amplitude and speed change from one half-cycle to the next,
holds (some with co-contraction) and rests (muscles relaxed, the limb settling under gravity
and passive forces). The excitations that follow it come from a feedforward/feedback
controller: static optimisation along the reference (with the co-contraction level as the
activation baseline) gives the feedforward activations; a PD law on the tracking error adds a
torque correction, spread over the muscles along their torque-per-activation directions; the
first-order activation dynamics are inverted over a short look-ahead to get excitations. The
joint then moves by forward simulation of those excitations, so kinematics, activations and
forces are consistent with the muscle model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from emg_msk_ros.physics.forward import ForwardIntegrator, ForwardResult, collect
from emg_msk_ros.physics.preset import Preset
from emg_msk_ros.physics.static_opt import solve_activations, torque_coefficients

REGIMES = {  # peak angular speed of a move, rad/s (low, high)
    "slow": (0.3, 1.2),
    "fast": (1.5, 4.0),
    "mixed": (0.3, 4.0),
}
_LOOKAHEAD = 0.02  # s over which the controller inverts the activation dynamics
_BANDWIDTH = 3.0  # Hz, closed-loop tracking bandwidth of the PD law
_DAMPING_RATIO = 0.8
_RAMP = 0.3  # s, co-contraction and relaxation ramps


@dataclass(frozen=True)
class MotionSettings:
    """What kind of motion to generate (angles rad, speeds rad/s, times s)."""

    regime: str = "mixed"  # slow | fast | mixed
    max_speed: float | None = None  # cap on the reference's peak speed
    margin: float = 0.1  # fraction of the joint range kept clear at each end
    cocontraction: float = 0.3  # largest co-contraction activation level
    tone: float = 0.02  # resting excitation of every muscle
    # signal-dependent motor noise (Harris & Wolpert, Nature 394:780, 1998): low-pass (10 Hz)
    # noise on each excitation whose s.d. is this fraction of the excitation, so relaxed
    # muscles stay quiet
    excitation_noise: float = 0.03

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"motion regime must be one of {', '.join(REGIMES)}, "
                             f"got {self.regime!r}")
        if self.max_speed is not None and not self.max_speed > 0:
            raise ValueError(f"max_speed must be > 0 rad/s, got {self.max_speed}")
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        if self.excitation_noise < 0:
            raise ValueError(f"excitation_noise must be >= 0, got {self.excitation_noise}")

    @property
    def speeds(self) -> tuple[float, float]:
        """(low, high) peak speed of moves, rad/s."""
        low, high = REGIMES[self.regime]
        if self.max_speed is not None:
            high = self.max_speed
            low = min(low, 0.5 * high)
        return low, high


@dataclass
class Reference:
    """The planned motion on the simulation time base."""

    theta: np.ndarray  # (T,) rad
    omega: np.ndarray  # (T,) rad/s
    alpha: np.ndarray  # (T,) rad/s^2
    cocontraction: np.ndarray  # (T,) activation baseline on top of the tone
    engaged: np.ndarray  # (T,) 0..1: 1 = tracking, 0 = relaxed (rest)


def _min_jerk(start: float, end: float, n: int, dt: float):
    """Minimum-jerk move sampled at n points (angle, velocity, acceleration)."""
    duration = n * dt
    s = np.arange(n) / n
    shape = 10 * s**3 - 15 * s**4 + 6 * s**5
    speed = (30 * s**2 - 60 * s**3 + 30 * s**4) / duration
    accel = (60 * s - 180 * s**2 + 120 * s**3) / duration**2
    delta = end - start
    return start + delta * shape, delta * speed, delta * accel


class _Planner:
    """Appends reference pieces until the duration is filled."""

    def __init__(self, preset: Preset, dt: float, rng: np.random.Generator,
                 settings: MotionSettings, start: float, rest_angle: float) -> None:
        lo, hi = preset.joint.range
        pad = settings.margin * (hi - lo)
        self.lo, self.hi = lo + pad, hi - pad
        self.dt, self.rng, self.settings = dt, rng, settings
        self.rest_angle = float(np.clip(rest_angle, self.lo, self.hi))
        self.angle = start
        self.pieces: list[tuple[np.ndarray, ...]] = []
        self.length = 0

    def _append(self, theta, omega, alpha, cocontraction: float, engaged: float) -> None:
        n = len(theta)
        self.pieces.append((theta, omega, alpha, np.full(n, cocontraction), np.full(n, engaged)))
        self.length += n

    def move(self, target: float, speed: float, cocontraction: float = 0.0) -> None:
        distance = abs(target - self.angle)
        duration = max(1.875 * distance / speed, 0.15)  # peak speed of min-jerk: 1.875 d / T
        n = max(int(round(duration / self.dt)), 2)
        self._append(*_min_jerk(self.angle, target, n, self.dt), cocontraction, 1.0)
        self.angle = target

    def hold(self, duration: float, cocontraction: float = 0.0, engaged: float = 1.0) -> None:
        n = max(int(round(duration / self.dt)), 1)
        self._append(np.full(n, self.angle), np.zeros(n), np.zeros(n), cocontraction, engaged)

    def speed(self) -> float:
        low, high = self.settings.speeds
        return float(np.exp(self.rng.uniform(np.log(low), np.log(high))))

    def target(self) -> float:
        return float(self.rng.uniform(self.lo, self.hi))

    def episode(self) -> None:
        """One randomly chosen episode: move, cycles, hold or rest; a third of the active
        episodes add co-contraction (a random level up to ``settings.cocontraction``)."""
        kind = self.rng.choice(["move", "cycles", "hold", "rest"], p=[0.3, 0.35, 0.2, 0.15])
        top = self.settings.cocontraction
        cc = float(self.rng.uniform(0.3 * top, top)) if self.rng.random() < 0.35 else 0.0
        if kind == "move":
            self.move(self.target(), self.speed(), cc)
            self.hold(self.rng.uniform(0.0, 0.6), cc)
        elif kind == "cycles":
            centre = self.target()
            self.move(centre, self.speed(), cc)
            amplitude = self.rng.uniform(0.15, 0.5) * (self.hi - self.lo)
            for half in range(2 * int(self.rng.integers(2, 6))):
                amplitude *= self.rng.uniform(0.75, 1.3)  # amplitude drifts over the episode
                side = 1.0 if half % 2 == 0 else -1.0
                goal = float(np.clip(centre + side * 0.5 * amplitude, self.lo, self.hi))
                self.move(goal, self.speed(), cc)
            self.move(centre, self.speed(), cc)
        elif kind == "hold":
            self.move(self.target(), self.speed(), cc)
            self.hold(self.rng.uniform(0.8, 3.0), cc)
        else:
            self.move(self.rest_angle, min(self.speed(), 1.0))
            self.hold(self.rng.uniform(1.5, 4.0), engaged=0.0)

    def reference(self, n: int) -> Reference:
        columns = [np.concatenate(c)[:n] for c in zip(*self.pieces)]
        theta, omega, alpha, cocontraction, engaged = columns
        width = max(int(_RAMP / self.dt), 1)
        window = np.hanning(2 * width + 1)
        window /= window.sum()
        smooth = [np.convolve(np.pad(x, width, mode="edge"), window, mode="valid")
                  for x in (cocontraction, engaged)]
        return Reference(theta, omega, alpha, *smooth)


def plan_reference(preset: Preset, n: int, dt: float, rng: np.random.Generator,
                   settings: MotionSettings, start: float, rest_angle: float) -> Reference:
    """A reference of n samples (step dt) starting at rest at ``start``."""
    planner = _Planner(preset, dt, rng, settings, start, rest_angle)
    planner.hold(rng.uniform(0.5, 1.0), engaged=0.0)
    while planner.length < n:
        planner.episode()
    return planner.reference(n)


def rest_angle(preset: Preset, tone: float) -> float:
    """Angle (rad) where the relaxed limb (all muscles at ``tone``) is in static equilibrium."""
    theta = np.linspace(*preset.joint.range, 2001)
    activation = np.full((theta.size, preset.muscles.count), tone)
    net = preset.muscle_torque(preset.muscle_forces(activation, theta, np.zeros_like(theta)),
                               theta) + preset.joint.passive_torque(theta, 0.0)
    # the stable equilibrium: net torque crosses zero from positive to negative
    crossings = np.nonzero((net[:-1] > 0) & (net[1:] <= 0))[0]
    if crossings.size == 0:
        return float(theta[np.argmin(np.abs(net))])
    hang = preset.joint.hang_angle
    best = crossings[np.argmin(np.abs(theta[crossings] - hang))]
    return float(theta[best])


def track(preset: Preset, reference: Reference, dt: float, rng: np.random.Generator,
          settings: MotionSettings) -> ForwardResult:
    """Forward-simulate the muscles tracking ``reference``; returns the simulated trial."""
    n = len(reference.theta)
    joint = preset.joint
    tone = settings.tone
    baseline = tone + reference.cocontraction[:, None] * np.ones(preset.muscles.count)
    required = joint.required_muscle_torque(reference.theta, reference.omega, reference.alpha)
    k, passive = torque_coefficients(preset, reference.theta, reference.omega)
    feedforward, _ = solve_activations(k, required - passive, baseline)
    relaxed = np.full_like(feedforward, tone)
    engaged = reference.engaged[:, None]
    feedforward = engaged * feedforward + (1.0 - engaged) * relaxed
    direction = k / np.maximum((k**2).sum(-1, keepdims=True), 1e-12)
    omega_n = 2 * math.pi * _BANDWIDTH
    kp, kd = joint.inertia * omega_n**2, 2 * _DAMPING_RATIO * joint.inertia * omega_n
    ahead = int(round((_LOOKAHEAD + preset.activation.delay) / dt))
    gain_up = 1.0 / -math.expm1(-_LOOKAHEAD / preset.activation.tau_act)
    gain_down = 1.0 / -math.expm1(-_LOOKAHEAD / preset.activation.tau_deact)
    noise = _excitation_noise(rng, n, preset.muscles.count, dt, settings.excitation_noise)

    integrator = ForwardIntegrator(preset, dt, reference.theta[0], 0.0, feedforward[0])
    excitation = np.empty_like(feedforward)
    steps = []
    state = feedforward[0]
    for i in range(n):
        j = min(i + ahead, n - 1)
        error = reference.theta[j] - integrator.theta
        d_error = reference.omega[j] - integrator.omega
        correction = reference.engaged[i] * (kp * error + kd * d_error)
        target = np.minimum(np.maximum(feedforward[j] + correction * direction[j], 0.0), 1.0)
        gain = np.where(target > state, gain_up, gain_down)
        u = state + gain * (target - state) + noise[i] * target
        u = excitation[i] = np.minimum(np.maximum(u, 0.0), 1.0)
        step = integrator.step(u)
        state = step.activation
        steps.append(step)
    return collect(steps, excitation, dt)


def _excitation_noise(rng: np.random.Generator, n: int, m: int, dt: float, sd: float):
    """Low-pass (10 Hz) Gaussian noise of standard deviation ``sd``, shape (n, m)."""
    if sd <= 0:
        return np.zeros((n, m))
    sos = signal.butter(2, 10.0, fs=1.0 / dt, output="sos")
    raw = signal.sosfilt(sos, rng.standard_normal((n + 1000, m)), axis=0)[1000:]
    return sd * raw / raw.std(axis=0)


def simulate_motion(preset: Preset, duration: float, dt: float, rng: np.random.Generator,
                    settings: MotionSettings | None = None) -> tuple[ForwardResult, Reference]:
    """A trial of ``duration`` s at step ``dt``: random reference, tracked by the muscles."""
    settings = settings or MotionSettings()
    n = int(round(duration / dt))
    if n < 4:
        raise ValueError(f"duration {duration} s is too short for dt {dt} s")
    rest = rest_angle(preset, settings.tone)
    reference = plan_reference(preset, n, dt, rng, settings, rest, rest)
    return track(preset, reference, dt, rng, settings), reference
