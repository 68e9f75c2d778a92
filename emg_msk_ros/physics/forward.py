"""Forward simulation: excitations -> activations -> muscle forces -> joint motion (numpy).

The integrator advances theta, theta' (and, with a compliant tendon, the fibre lengths) by a
fixed step dt. Velocity update: linearly implicit midpoint in theta' (the muscles'
force-velocity damping is stiff for light segments such as the hand), position update:
symplectic Euler. Sample k reports theta_k, the mid-step velocity (theta_k+1 - theta_k-1)/2dt,
and the forces at that velocity, so that the recorded motion satisfies the equation of motion
with central differences: inverse dynamics of the output recovers the muscle torque.

Leading batch axes are supported: theta0 of shape (B,) simulates B trials at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.activation import ActivationFilter
from emg_msk_ros.physics.muscle import MuscleSet
from emg_msk_ros.physics.preset import Preset

TENDONS = ("rigid", "compliant")
# Step (fraction of l0) of the finite-difference Jacobian of compliant-tendon units.
_FIBER_STEP = 1e-6


class StepOutput(NamedTuple):
    """One sample of the simulated state (SI units; arrays (..., M) for muscles)."""

    theta: np.ndarray  # rad
    omega: np.ndarray  # rad/s
    activation: np.ndarray
    force: np.ndarray  # N
    moment: np.ndarray  # N·m per muscle


@dataclass
class ForwardResult:
    """A simulated trial on a uniform time base (first axis: time)."""

    time: np.ndarray  # (T,) s
    angle: np.ndarray  # (T, ...) rad
    velocity: np.ndarray  # (T, ...) rad/s
    excitation: np.ndarray  # (T, ..., M)
    activation: np.ndarray  # (T, ..., M)
    force: np.ndarray  # (T, ..., M) N
    moment: np.ndarray  # (T, ..., M) N·m

    @property
    def torque(self) -> np.ndarray:
        """Net muscle torque (T, ...) in N·m."""
        return self.moment.sum(-1)


class ForwardIntegrator:
    """Coupled activation, muscle and joint dynamics advanced one step of ``dt`` s at a time."""

    def __init__(self, preset: Preset, dt: float, theta0, omega0=0.0, activation0=None,
                 tendon: str = "rigid", muscles: MuscleSet | None = None) -> None:
        if tendon not in TENDONS:
            raise ValueError(f"tendon must be one of {TENDONS}, got {tendon!r}")
        if not dt > 0:
            raise ValueError(f"dt must be > 0 s, got {dt}")
        self.preset = preset
        self.muscles = preset.muscles if muscles is None else muscles
        self.dt = float(dt)
        self.tendon = tendon
        self.theta = np.asarray(theta0, dtype=np.float64).copy()
        self.omega = np.broadcast_to(np.asarray(omega0, dtype=np.float64),
                                     self.theta.shape).copy()
        shape = (*self.theta.shape, self.muscles.count)
        initial = np.broadcast_to(np.asarray(0.0 if activation0 is None else activation0,
                                             dtype=np.float64), shape).copy()
        self.activation = ActivationFilter(preset.activation, self.dt, initial)
        self.fiber_length = None
        self._singles = None  # one trial with a rigid tendon: step muscle by muscle in floats
        if tendon == "rigid" and self.theta.ndim == 0 and type(
                self.muscles.max_isometric_force) is np.ndarray:
            self._singles = [self.muscles.single(i) for i in range(self.muscles.count)]
            self.theta, self.omega = float(self.theta), float(self.omega)
        if tendon == "compliant":
            self.fiber_length = hill.compliant_static_fiber_length(
                self.muscles, preset.curves, initial, preset.lmt(self.theta))

    def step(self, excitation, external_torque=0.0) -> StepOutput:
        """Apply ``excitation`` (..., M) and ``external_torque`` (N·m) over one step."""
        a = self.activation.step(np.minimum(np.maximum(excitation, 0.0), 1.0))
        theta, omega = self.theta, self.omega
        if self._singles is not None:
            return self._step_one_by_one(a, theta, omega, float(external_torque))
        lengths, arms = hill.geometry(self.muscles, theta)
        if self.fiber_length is not None:
            return self._step_compliant(a, theta, omega, lengths, arms, external_torque)
        force, d_force = hill.rigid_force(self.muscles, self.preset.curves, a, lengths, arms,
                                          omega, gradient=True)
        d_omega = self._velocity_change(theta, omega, (arms * force).sum(-1),
                                        (arms * d_force).sum(-1), external_torque)
        force = force + 0.5 * d_force * d_omega[..., None]
        return StepOutput(theta.copy(), omega + 0.5 * d_omega, a, force, arms * force)

    def _velocity_change(self, theta, omega, muscle_torque, muscle_stiffness, external_torque):
        """Linearly implicit midpoint step of theta' (rad/s), then the symplectic theta step.

        ``muscle_stiffness`` is d(muscle torque)/d theta' (N·m·s/rad, <= 0).
        """
        joint = self.preset.joint
        torque = muscle_torque + external_torque + joint.passive_torque(theta, omega)
        stiffness = muscle_stiffness - joint.damping
        d_omega = self.dt * torque / (joint.inertia - 0.5 * self.dt * stiffness)
        self.omega = omega + d_omega
        self.theta = theta + self.dt * self.omega
        return d_omega

    def _step_one_by_one(self, a, theta: float, omega: float, external_torque: float):
        """One trial, rigid tendon: forces muscle by muscle in Python floats (faster than
        numpy for a handful of muscles), then the same joint update."""
        curves = self.preset.curves
        rows = []
        for muscle, activation in zip(self._singles, a.tolist()):
            length, arm = hill.geometry(muscle, theta)
            rows.append((*hill.rigid_force(muscle, curves, activation, length, arm, omega,
                                           gradient=True), arm))
        torque = stiffness = 0.0
        for force, d_force, arm in rows:
            torque += arm * force
            stiffness += arm * d_force
        d_omega = self._velocity_change(theta, omega, torque, stiffness, external_torque)
        force = np.array([f + 0.5 * df * d_omega for f, df, _ in rows])
        moment = force * np.array([arm for _, _, arm in rows])
        return StepOutput(theta, omega + 0.5 * d_omega, a, force, moment)

    def _step_compliant(self, a, theta, omega, lengths, arms, external_torque) -> StepOutput:
        """Compliant tendons: linearly implicit Euler on (theta', fibre lengths), with the
        coupling through theta_k+1 = theta_k + dt·theta'_k+1 (stiff tendons stay stable).
        First-order accurate: inverse dynamics of the output agrees to a few percent, not
        exactly as with the rigid tendon.

        Partial derivatives of tendon force F and fibre velocity v with respect to the fibre
        length l and the muscle-tendon length L come from finite differences.
        """
        joint, curves, dt, muscles = self.preset.joint, self.preset.curves, self.dt, self.muscles
        fiber = self.fiber_length
        step = _FIBER_STEP * muscles.optimal_fiber_length

        def force_and_velocity(l_fiber, l_mt):
            return (hill.compliant_force(muscles, l_fiber, l_mt),
                    hill.compliant_fiber_velocity(muscles, curves, a, l_fiber, l_mt))

        force, velocity = force_and_velocity(fiber, lengths)
        force_l, velocity_l = ((x - x0) / step for x, x0 in zip(
            force_and_velocity(fiber + step, lengths), (force, velocity)))
        force_L, velocity_L = ((x - x0) / step for x, x0 in zip(
            force_and_velocity(fiber, lengths + step), (force, velocity)))
        # L at theta_k+1 = theta_k + dt·theta'_k+1: dL/dtheta' = -r·dt
        force_w, velocity_w = -arms * dt * force_L, -arms * dt * velocity_L
        moving = omega[..., None]
        torque = ((arms * (force + force_w * moving)).sum(-1) + external_torque
                  + joint.passive_torque(theta, omega)) / joint.inertia
        torque_w = ((arms * force_w).sum(-1) - joint.damping) / joint.inertia
        torque_l = arms * force_l / joint.inertia
        velocity = velocity + velocity_w * moving
        relief = 1.0 / (1.0 - dt * np.minimum(velocity_l, 0.0))
        d_omega = dt * (torque + dt * (torque_l * velocity * relief).sum(-1)) / (
            1.0 - dt * torque_w - dt**2 * (torque_l * velocity_w * relief).sum(-1))
        d_fiber = dt * (velocity + velocity_w * d_omega[..., None]) * relief
        force = force + 0.5 * (force_l * d_fiber + force_w * (moving + d_omega[..., None]))
        out = StepOutput(theta.copy(), omega + 0.5 * d_omega, a, force, arms * force)
        self.fiber_length = fiber + d_fiber
        self.omega = omega + d_omega
        self.theta = theta + dt * self.omega
        return out

def simulate_forward(preset: Preset, excitation, dt: float, theta0, omega0=0.0,
                     external_torque=None, tendon: str = "rigid",
                     muscles: MuscleSet | None = None) -> ForwardResult:
    """Open-loop forward simulation of excitation (T, ..., M) sampled every ``dt`` s.

    The activation starts in steady state on the first excitation sample;
    ``external_torque`` (T, ...) N·m is optional.
    """
    excitation = np.asarray(excitation, dtype=np.float64)
    if excitation.ndim < 2 or excitation.shape[-1] != preset.muscles.count:
        raise ValueError(f"excitation must be (T, ..., {preset.muscles.count}), "
                         f"got {excitation.shape}")
    integrator = ForwardIntegrator(preset, dt, theta0, omega0, excitation[0], tendon, muscles)
    n = excitation.shape[0]
    tau = np.zeros(n) if external_torque is None else np.asarray(external_torque, float)
    steps = [integrator.step(excitation[k], tau[k]) for k in range(n)]
    return collect(steps, excitation, dt)


def collect(steps: list[StepOutput], excitation: np.ndarray, dt: float) -> ForwardResult:
    """Stack per-step outputs into a :class:`ForwardResult`."""
    columns = [np.stack(column) for column in zip(*steps)]
    theta, omega, activation, force, moment = columns
    return ForwardResult(time=np.arange(len(steps)) * dt, angle=theta, velocity=omega,
                         excitation=np.asarray(excitation, dtype=np.float64),
                         activation=activation, force=force, moment=moment)
