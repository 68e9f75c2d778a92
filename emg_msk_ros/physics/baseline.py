"""The EMG-driven physics baseline: excitation -> activation -> Hill forces -> joint motion.

:class:`EmgDrivenModel` advances the preset's equations sample by sample from conditioned EMG
(excitations 0..1), as a streaming estimator of angle, velocity, activations, forces and
moments; the joint stops at its range limits (velocity zeroed) instead of leaving it.

:func:`calibrate` identifies bounded parameters from a training trial the way CEINMS-style
tools do: with the measured motion held fixed, it matches the model's net muscle torque to the
torque inverse dynamics requires, by bounded least squares over per-muscle strength gains
(50-250 %), optimal fibre and tendon slack length scales (80-120 %), the activation time
constants, the shape factor A (-3..0) and the electromechanical delay (0-70 ms). A weak pull
toward the nominal values keeps poorly excited parameters where they were.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize

from emg_msk_ros.physics import activation as act
from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.activation import ActivationParams
from emg_msk_ros.physics.forward import ForwardIntegrator, ForwardResult, StepOutput, collect
from emg_msk_ros.physics.inverse import inverse_dynamics
from emg_msk_ros.physics.preset import Preset


@dataclass(frozen=True)
class CalibrationBounds:
    """Bounds of the calibrated parameters (factors on the preset's values; times in s)."""

    strength: tuple[float, float] = (0.5, 2.5)
    fiber_length: tuple[float, float] = (0.8, 1.2)
    tendon_length: tuple[float, float] = (0.8, 1.2)
    tau_fast: tuple[float, float] = (0.005, 0.05)  # tau_act (first order) or tau1 (recursive)
    tau_slow: tuple[float, float] = (0.02, 0.2)  # tau_deact (first order) or tau2 (recursive)
    shape_factor: tuple[float, float] = (-3.0, 0.0)
    delay: tuple[float, float] = (0.0, 0.07)


@dataclass
class CalibrationResult:
    """Calibrated parameters and how well the torque fits (N·m)."""

    preset: Preset  # the preset with the calibrated parameters
    strength: np.ndarray  # (M,) F0 factors
    fiber_length: np.ndarray  # (M,) l0 factors
    tendon_length: np.ndarray  # (M,) l_TS factors
    activation: ActivationParams
    rms_before: float  # torque error RMS with the preset's parameters
    rms_after: float  # ... with the calibrated ones
    evaluations: int  # parameter sets evaluated


class _Problem:
    """Torque residuals of parameter vectors, evaluated in batches (one per Jacobian)."""

    def __init__(self, preset: Preset, excitation, angle, velocity, torque, dt, bounds,
                 prior_weight: float) -> None:
        self.preset = preset
        self.excitation = excitation  # (T, M)
        self.dt = dt
        self.torque = torque  # (T,)
        self.scale = max(float(np.std(torque)), 1e-6)
        self.lengths, self.arms = hill.geometry(preset.muscles, angle)  # (T, M)
        self.velocity = velocity
        m = preset.muscles.count
        spans = ([bounds.strength] * m + [bounds.fiber_length] * m + [bounds.tendon_length] * m
                 + [bounds.tau_fast, bounds.tau_slow, bounds.shape_factor, bounds.delay])
        self.lo = np.array([s[0] for s in spans])
        self.hi = np.array([s[1] for s in spans])
        params = preset.activation
        fast, slow = ((params.tau_act, params.tau_deact) if params.model == "first_order"
                      else (params.tau1, params.tau2))
        nominal = np.concatenate([np.ones(3 * m), [fast, slow, params.shape_factor,
                                                   params.delay]])
        self.nominal = np.clip(nominal, self.lo, self.hi)
        self.prior_weight = prior_weight
        self.evaluations = 0

    def unpack(self, p: np.ndarray):
        """Parameter rows (B, P) -> (muscle factors (B, 1, M) x3, activation columns (B, 1))."""
        m = self.preset.muscles.count
        factors = [p[:, i * m:(i + 1) * m][:, None, :] for i in range(3)]
        extra = [p[:, 3 * m + i][:, None] for i in range(4)]
        return factors, extra

    def activation(self, extra) -> np.ndarray:
        """Activations (B, T, M) for each row's activation parameters."""
        fast, slow, shape, delay = extra
        u = np.stack([act.delayed(self.excitation, self.dt, float(d)) for d in delay[:, 0]], 1)
        if self.preset.activation.model == "first_order":
            neural = act.first_order(u, self.dt, fast, slow)
        else:
            neural = act.recursive(u, self.dt, fast, slow)
        return np.moveaxis(act.nonlinearity(neural, shape[None]), 0, 1)

    def residuals(self, p: np.ndarray) -> np.ndarray:
        """(B, T + P) scaled residuals: torque errors, then the pull toward nominal."""
        self.evaluations += p.shape[0]
        (strength, fiber, tendon), extra = self.unpack(p)
        muscles = self.preset.muscles.scaled(strength, fiber, tendon)
        a = self.activation(extra)
        force = hill.rigid_force(muscles, self.preset.curves, a, self.lengths, self.arms,
                                 self.velocity)
        torque = (force * self.arms).sum(-1)
        prior = self.prior_weight * (p - self.nominal) / (self.hi - self.lo)
        return np.concatenate([(torque - self.torque) / self.scale, prior], axis=1)

    def apply(self, p: np.ndarray) -> tuple[Preset, tuple]:
        (strength, fiber, tendon), extra = self.unpack(p[None])
        fast, slow, shape, delay = (float(e[0, 0]) for e in extra)
        params = self.preset.activation
        keys = ("tau_act", "tau_deact") if params.model == "first_order" else ("tau1", "tau2")
        params = replace(params, **{keys[0]: fast, keys[1]: slow}, shape_factor=shape,
                         delay=delay)
        factors = (strength[0, 0], fiber[0, 0], tendon[0, 0])
        preset = self.preset.with_muscles(self.preset.muscles.scaled(*factors))
        return preset.with_activation(params), factors


def calibrate(preset: Preset, excitation, angle, dt: float, external_torque=0.0,
              bounds: CalibrationBounds | None = None, rate: float = 100.0,
              prior_weight: float = 0.3, max_iterations: int = 50) -> CalibrationResult:
    """Identify bounded parameters from a training trial.

    ``excitation`` (T, M) in 0..1 and ``angle`` (T,) rad are sampled every ``dt`` s;
    ``external_torque`` (N·m) is the known external load. The fit runs on samples taken at
    ``rate`` Hz (activation dynamics are integrated exactly at that step).
    """
    bounds = bounds or CalibrationBounds()
    excitation = np.asarray(excitation, dtype=np.float64)
    angle = np.asarray(angle, dtype=np.float64)
    if excitation.shape != (angle.shape[0], preset.muscles.count):
        raise ValueError(f"excitation must be ({angle.shape[0]}, {preset.muscles.count}), "
                         f"got {excitation.shape}")
    torque = inverse_dynamics(preset, angle, dt, external_torque)
    velocity = np.gradient(angle, dt)
    stride = max(int(round(1.0 / (rate * dt))), 1)
    window = np.ones(stride) / stride  # average the excitation over each calibration step
    smoothed = np.stack([np.convolve(excitation[:, c], window, mode="full")[:len(angle)]
                         for c in range(excitation.shape[1])], 1)
    pick = slice(stride - 1, None, stride)
    problem = _Problem(preset, smoothed[pick], angle[pick], velocity[pick], torque[pick],
                       dt * stride, bounds, prior_weight)
    cache: dict[bytes, np.ndarray] = {}

    def fun(z):
        p = problem.lo + (problem.hi - problem.lo) * z
        cache[z.tobytes()] = r = problem.residuals(p[None])[0]
        return r

    def jac(z):
        step = 1e-4
        shifted = np.where(z + step <= 1.0, step, -step)
        rows = z[None] + np.diag(shifted)
        p = problem.lo + (problem.hi - problem.lo) * rows
        base = cache.get(z.tobytes())
        base = fun(z) if base is None else base
        return ((problem.residuals(p) - base) / shifted[:, None]).T

    z0 = (problem.nominal - problem.lo) / (problem.hi - problem.lo)
    start = fun(z0)
    solution = optimize.least_squares(fun, z0, jac=jac, bounds=(0.0, 1.0),
                                      max_nfev=max_iterations, x_scale="jac")
    p = problem.lo + (problem.hi - problem.lo) * solution.x
    calibrated, (strength, fiber, tendon) = problem.apply(p)
    n = len(problem.torque)
    return CalibrationResult(
        preset=calibrated, strength=strength, fiber_length=fiber, tendon_length=tendon,
        activation=calibrated.activation,
        rms_before=float(np.sqrt(np.mean(start[:n] ** 2)) * problem.scale),
        rms_after=float(np.sqrt(np.mean(solution.fun[:n] ** 2)) * problem.scale),
        evaluations=problem.evaluations)


class EmgDrivenModel:
    """Streaming EMG-driven estimate of the joint and muscle state from excitations."""

    def __init__(self, preset: Preset, dt: float, theta0: float, omega0: float = 0.0,
                 excitation0=None) -> None:
        self.preset = preset
        start = np.zeros(preset.muscles.count) if excitation0 is None else excitation0
        self._integrator = ForwardIntegrator(preset, dt, np.asarray(theta0, dtype=float),
                                             omega0, start)

    def step(self, excitation) -> StepOutput:
        """Advance one sample with ``excitation`` (M,) in 0..1; returns the state estimate."""
        out = self._integrator.step(excitation)
        lo, hi = self.preset.joint.range
        theta = self._integrator.theta
        if theta < lo or theta > hi:  # a joint stop: the estimate stays inside the range
            self._integrator.theta = lo if theta < lo else hi
            self._integrator.omega = 0.0 * self._integrator.omega
        return out

    def run(self, excitation) -> ForwardResult:
        """Estimates for a whole trial of excitations (T, M)."""
        excitation = np.asarray(excitation, dtype=np.float64)
        steps = [self.step(u) for u in excitation]
        return collect(steps, excitation, self._integrator.dt)
