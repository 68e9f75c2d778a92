"""Varied, physically consistent motions: a random reference, tracked by the muscles.

A reference theta_ref(t) is drawn as a chain of minimum-jerk pieces: point-to-point moves,
flexion-extension cycles whose amplitude and speed change from one half-cycle to the next,
holds (some with co-contraction) and rests (muscles relaxed, the limb settling under gravity
and passive forces). The excitations that follow it come from the feedforward/feedback
controller of :mod:`emg_msk_ros.physics.motor_control`. The joint then moves by forward
simulation of those excitations, so kinematics, activations and forces are consistent with
the muscle model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import signal

from emg_msk_ros.physics.forward import ForwardResult, collect
from emg_msk_ros.physics.motor_control import MotorSettings, Wearer
from emg_msk_ros.physics.preset import Preset

REGIMES = {  # peak angular speed of a move, rad/s (low, high)
    "slow": (0.3, 1.2),
    "fast": (1.5, 4.0),
    "mixed": (0.3, 4.0),
}
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
                 settings: MotionSettings, start: float, rest_angle: float,
                 rests: bool = True) -> None:
        lo, hi = preset.joint.range
        pad = settings.margin * (hi - lo)
        self.lo, self.hi = lo + pad, hi - pad
        self.dt, self.rng, self.settings = dt, rng, settings
        self.rests = rests  # False: no rest episodes, holds keep the person engaged
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
        episodes add co-contraction (a random level up to ``settings.cocontraction``); without
        ``rests`` the other three keep their odds."""
        kinds, odds = ["move", "cycles", "hold", "rest"], [0.3, 0.35, 0.2, 0.15]
        if not self.rests:
            kinds, odds = kinds[:3], [p / 0.85 for p in odds[:3]]
        kind = self.rng.choice(kinds, p=odds)
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


def _planner(preset: Preset, n: int, dt: float, rng: np.random.Generator,
             settings: MotionSettings, start: float, rest_angle: float,
             rests: bool = True) -> _Planner:
    """A planner filled with at least n samples (step dt), starting at ``start``: relaxed
    there, or without ``rests`` holding it."""
    planner = _Planner(preset, dt, rng, settings, start, rest_angle, rests)
    planner.hold(rng.uniform(0.5, 1.0), engaged=0.0 if rests else 1.0)
    while planner.length < n:
        planner.episode()
    return planner


def plan_reference(preset: Preset, n: int, dt: float, rng: np.random.Generator,
                   settings: MotionSettings, start: float, rest_angle: float) -> Reference:
    """A reference of n samples (step dt) starting at rest at ``start``."""
    return _planner(preset, n, dt, rng, settings, start, rest_angle).reference(n)


def plan_task(preset: Preset, duration: float, dt: float, rng: np.random.Generator,
              settings: MotionSettings | None = None, rests: bool = True) -> Reference:
    """A repeatable task: random motion (step dt) that starts at the relaxed limb's rest angle,
    is cut at its last standstill within ``duration`` s, and returns there for the last
    0.5 s; relaxed at both ends and in rest episodes, or without ``rests`` engaged throughout
    (a bout of movements and holds)."""
    settings = settings or MotionSettings()
    rest = rest_angle(preset, settings.tone)
    n = int(round(duration / dt))
    planner = _planner(preset, n, dt, rng, settings, rest, rest, rests)
    reference = planner.reference(planner.length)
    still = np.flatnonzero(reference.omega[:n] == 0.0)
    cut = int(still[-1]) + 1 if still.size else n
    planner = _Planner(preset, dt, rng, settings, float(reference.theta[cut - 1]), rest)
    planner.move(rest, min(planner.speed(), 1.0))
    planner.hold(0.5, engaged=0.0 if rests else 1.0)
    back = planner.reference(planner.length)
    columns = [getattr(r, f.name)[:k] for f in fields(Reference)
               for r, k in ((reference, cut), (back, None))]
    return Reference(*(np.concatenate(columns[i:i + 2]) for i in range(0, len(columns), 2)))


def repeat_reference(reference: Reference, count: int, extra: int = 0) -> Reference:
    """``reference`` ``count`` times in a row, then its first ``extra`` samples."""
    columns = [getattr(reference, f.name) for f in fields(Reference)]
    return Reference(*(np.concatenate([c] * count + [c[:extra]]) for c in columns))


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
          settings: MotionSettings, motor: MotorSettings | None = None) -> ForwardResult:
    """Forward-simulate the muscles tracking ``reference``; returns the simulated trial.

    ``motor`` sets the person's feedback (default: the ideal tracker, no reaction delay)."""
    noise = excitation_noise(rng, len(reference.theta), preset.muscles.count, dt,
                             settings.excitation_noise)
    wearer = Wearer(preset, reference, dt, noise, settings.tone, motor)
    excitation, steps = [], []
    while not wearer.done:
        u, step = wearer.step()
        excitation.append(u)
        steps.append(step)
    return collect(steps, np.array(excitation), dt)


def excitation_noise(rng: np.random.Generator, n: int, m: int, dt: float, sd: float):
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
