"""A person's motor control: the excitations that make the preset's muscles follow a planned
motion (:class:`~emg_msk_ros.physics.motions.Reference`), one integration step at a time.

- Feedforward: static optimisation along the reference (inverse dynamics of the planned motion,
  with the co-contraction level as the activation baseline); relaxed muscles at rest.
- Feedback: a PD law on the tracking error, spread over the muscles along their
  torque-per-activation directions. The error is the one the person perceived
  ``reaction_delay`` s ago (0: the simulator's ideal tracker); optionally a second,
  short-latency PD loop (a stretch reflex) on the error seen ``reflex_delay`` s ago.
- The first-order activation dynamics are inverted over a short look-ahead.
- Adaptation (``adaptation_time`` > 0): the person learns, with that forgetting time, an
  internal model of the external torque they feel (a least-squares fit
  tau_ext ≈ w·tau_required + b against the torque their plan requires, both as perceived
  ``reaction_delay`` s ago, while they track: relaxed, they learn nothing) and plans their
  feedforward for the rest: a person stops pushing where a device pushes for them. Without
  an external torque w = b = 0 and the feedforward is the plan's.
- Signal-dependent motor noise on each excitation.

:class:`Wearer` couples this controller with the forward integrator: the simulated person.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np

from emg_msk_ros.physics.forward import ForwardIntegrator, StepOutput
from emg_msk_ros.physics.static_opt import solve_activations, torque_coefficients

_LOOKAHEAD = 0.02  # s over which the controller inverts the activation dynamics
# Ridge of the adaptation's fit: (1 N·m)^2 on the slope's normal equation, 1e-3 on the offset's,
# so that a few samples of a small torque do not swing the internal model.
_RIDGE = (1.0, 1e-3)
_MAX_SHARE = 0.9  # largest share of the required torque the person leaves to the device
_BATCH = 10  # samples of adapted feedforward planned at once


@dataclass(frozen=True)
class MotorSettings:
    """Feedback and adaptation of the tracking person (Hz, s)."""

    bandwidth: float = 3.0  # closed-loop tracking bandwidth of the PD law
    damping_ratio: float = 0.8
    reaction_delay: float = 0.0  # s between a tracking error and the feedback acting on it
    adaptation_time: float = 0.0  # s, forgetting time of the internal model; 0: none
    # a second, short-latency (stretch reflex) PD loop: bandwidth Hz (0: none) and delay s
    reflex_bandwidth: float = 0.0
    reflex_delay: float = 0.04

    def __post_init__(self) -> None:
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0 Hz, got {self.bandwidth}")
        if not self.damping_ratio > 0:
            raise ValueError(f"damping_ratio must be > 0, got {self.damping_ratio}")
        if not 0.0 <= self.reaction_delay <= 1.0:
            raise ValueError(f"reaction_delay must be in [0, 1] s, got {self.reaction_delay}")
        if not self.adaptation_time >= 0.0:
            raise ValueError(f"adaptation_time must be >= 0 s, got {self.adaptation_time}")
        if not self.reflex_bandwidth >= 0.0:
            raise ValueError(f"reflex_bandwidth must be >= 0 Hz, got {self.reflex_bandwidth}")
        if self.reflex_bandwidth and not 0.0 <= self.reflex_delay <= self.reaction_delay:
            raise ValueError(f"reflex_delay must be in [0, reaction_delay] s, got "
                             f"{self.reflex_delay}")



class Tracker:
    """Excitations (0..1) that track ``reference`` with the preset's muscles, step ``dt`` s.

    ``noise`` (T, M) is the relative motor noise of each excitation (see
    :func:`emg_msk_ros.physics.motions.excitation_noise`); ``tone`` the relaxed excitation.
    """

    def __init__(self, preset, reference, dt: float, noise: np.ndarray, tone: float,
                 motor: MotorSettings | None = None) -> None:
        self.motor = motor or MotorSettings()
        self.preset, self.reference, self.dt = preset, reference, dt
        n, count = len(reference.theta), preset.muscles.count
        joint = preset.joint
        self.baseline = tone + reference.cocontraction[:, None] * np.ones(count)
        self.required = joint.required_muscle_torque(reference.theta, reference.omega,
                                                     reference.alpha)
        self.k, self.passive = torque_coefficients(preset, reference.theta, reference.omega)
        planned, _ = solve_activations(self.k, self.required - self.passive, self.baseline)
        self.tone = tone
        self.feedforward = self._engage(planned, slice(None))
        self.direction = self.k / np.maximum((self.k**2).sum(-1, keepdims=True), 1e-12)
        omega_n = 2 * math.pi * self.motor.bandwidth
        self.kp = joint.inertia * omega_n**2
        self.kd = 2 * self.motor.damping_ratio * joint.inertia * omega_n
        self.ahead = int(round((_LOOKAHEAD + preset.activation.delay) / dt))
        self.gain_up = 1.0 / -math.expm1(-_LOOKAHEAD / preset.activation.tau_act)
        self.gain_down = 1.0 / -math.expm1(-_LOOKAHEAD / preset.activation.tau_deact)
        self.noise = noise
        self.n = n
        delay = int(round(self.motor.reaction_delay / dt))
        self.reflex = None  # (kp, kd, delay steps) of the reflex loop
        if self.motor.reflex_bandwidth > 0:
            omega_r = 2 * math.pi * self.motor.reflex_bandwidth
            self.reflex = (joint.inertia * omega_r**2,
                           2 * self.motor.damping_ratio * joint.inertia * omega_r,
                           int(round(self.motor.reflex_delay / dt)))
        self._index = 0
        # perceived (theta, omega, external torque) of the last `delay` steps, oldest first
        self._perceived = collections.deque(maxlen=delay + 1)
        self._forget = math.exp(-dt / self.motor.adaptation_time) \
            if self.motor.adaptation_time > 0 else None
        self._moments = np.zeros(5)  # running means of x², x, 1, x·y, y
        self.share, self.offset = 0.0, 0.0  # internal model: tau_ext ≈ share·required + offset
        self._planned = (0, np.zeros((0, count)))  # (first sample, adapted feedforward rows)

    def _engage(self, planned: np.ndarray, rows) -> np.ndarray:
        engaged = self.reference.engaged[rows][..., None]
        return engaged * planned + (1.0 - engaged) * self.tone

    def _adapted_feedforward(self, j: int) -> np.ndarray:
        """The feedforward at sample j for the internal model; planned for _BATCH samples at
        a time with the model of the batch's first one (it changes over seconds)."""
        if self.share == 0.0 and self.offset == 0.0:
            return self.feedforward[j]
        start, planned = self._planned
        if not start <= j < start + len(planned):
            rows = slice(j, j + _BATCH)
            goal = (1.0 - self.share) * self.required[rows] - self.offset - self.passive[rows]
            activation, _ = solve_activations(self.k[rows], goal, self.baseline[rows])
            start, planned = self._planned = j, self._engage(activation, rows)
        return planned[j - start]

    def _adapt(self, i: int, felt: float) -> None:
        """Update the internal model with the torque felt at step ``i`` (N·m)."""
        x = float(self.required[i])
        sample = np.array([x * x, x, 1.0, x * felt, felt])
        self._moments = self._forget * self._moments + (1.0 - self._forget) * sample
        xx, x1, one, xy, y = self._moments
        a, b, c = xx + _RIDGE[0], x1, one + _RIDGE[1]
        det = a * c - b * b
        share = (c * xy - b * y) / det
        self.share = min(max(share, -_MAX_SHARE), _MAX_SHARE)
        self.offset = (a * y - b * xy) / det if share == self.share else \
            (y - self.share * x1) / c

    def _pd(self, kp: float, kd: float, j: int, perceived) -> float:
        """PD torque (N·m) on the error perceived at step ``perceived[0]``, against the target
        that the look-ahead sample j had then."""
        seen, seen_theta, seen_omega, _ = perceived
        lag = self._index - seen
        return (kp * (self.reference.theta[j - lag] - seen_theta)
                + kd * (self.reference.omega[j - lag] - seen_omega))

    def excitation(self, i: int, theta: float, omega: float, activation: np.ndarray,
                   external_torque: float = 0.0) -> np.ndarray:
        """Excitations (M,) for step ``i`` from the joint's state now (rad, rad/s), the muscles'
        activation after the previous step and the external torque acting now (N·m)."""
        self._index = i
        self._perceived.append((i, theta, omega, external_torque))
        seen, seen_theta, seen_omega, felt = self._perceived[0]
        if self._forget is not None and self.reference.engaged[seen] >= 0.5:
            self._adapt(seen, felt)
        reference, n = self.reference, self.n
        j = min(i + self.ahead, n - 1)
        correction = reference.engaged[i] * self._pd(self.kp, self.kd, j, self._perceived[0])
        if self.reflex is not None:
            kp, kd, steps = self.reflex
            recent = self._perceived[max(-1 - steps, -len(self._perceived))]
            correction += reference.engaged[i] * self._pd(kp, kd, j, recent)
        target = np.minimum(np.maximum(self._adapted_feedforward(j)
                                       + correction * self.direction[j], 0.0), 1.0)
        gain = np.where(target > activation, self.gain_up, self.gain_down)
        u = activation + gain * (target - activation) + self.noise[i] * target
        return np.minimum(np.maximum(u, 0.0), 1.0)


class Wearer:
    """The simulated person: :class:`Tracker` driving the preset's muscles and joint
    (:class:`ForwardIntegrator`), which also takes an external (exoskeleton) torque."""

    def __init__(self, preset, reference, dt: float, noise: np.ndarray, tone: float,
                 motor: MotorSettings | None = None) -> None:
        self.tracker = Tracker(preset, reference, dt, noise, tone, motor)
        self.integrator = ForwardIntegrator(preset, dt, reference.theta[0], 0.0,
                                            self.tracker.feedforward[0])
        self.activation = self.tracker.feedforward[0]
        self.index = 0

    @property
    def done(self) -> bool:
        """The reference has been followed to its end."""
        return self.index >= self.tracker.n

    def step(self, external_torque: float = 0.0) -> tuple[np.ndarray, StepOutput]:
        """One step with ``external_torque`` (N·m) applied: (excitation (M,), the step)."""
        integrator = self.integrator
        u = self.tracker.excitation(self.index, integrator.theta, integrator.omega,
                                    self.activation, external_torque)
        step = integrator.step(u, external_torque)
        self.activation = step.activation
        self.index += 1
        return u, step
