"""The assist controller without ROS: latest inputs + assist law + smoothing + safety layer.

Feed inputs as they arrive (``update_estimate``, ``update_muscles``, ``update_measured``), call
``step(now)`` at the control rate, and send ``StepOutput.command`` to the motor. ``now`` is the
controller's clock in s (monotonic); input ``stamp``\\ s are the messages' own stamps (s) and only
need to increase per input: an input whose stamp does not is ignored, with a reason. Inputs carry
their values in the controller's joint (or muscle) order. A non-finite value anywhere latches a
fault (see :mod:`emg_msk_ros.control.safety` for the states and what the command does in each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emg_msk_ros.control.laws import (ESTIMATE, MEASURED, MUSCLES, AssistLaw, LawInputs,
                                      LowPass)
from emg_msk_ros.control.limits import SafetyLimits
from emg_msk_ros.control.safety import SafetyLayer, SafetyOutput, State


@dataclass(frozen=True)
class StepOutput:
    """One control step. Torques in N·m per joint. ``stamp``: stamp (s) of the estimate used,
    nan before the first one. ``desired_torque`` is the smoothed law output (zero when the law
    has no output); ``safety`` holds the command, state and limit flags."""

    stamp: float
    human_torque: np.ndarray
    desired_torque: np.ndarray
    safety: SafetyOutput

    @property
    def command(self) -> np.ndarray:
        return self.safety.command


class AssistController:
    """Assist law + low-pass + :class:`SafetyLayer` for the joints ``joint_names``.

    ``muscle_names`` is the order of ``update_muscles`` activations (what the law reads).
    The measured joint state is required when the law needs it or ``require_measured`` is set;
    otherwise it is used for the gates whenever it is fresh (and watched once enabled with it).
    """

    def __init__(self, joint_names: Sequence[str], law: AssistLaw, limits: SafetyLimits,
                 muscle_names: Sequence[str] = (), smoothing_time_constant: float = 0.0,
                 require_measured: bool = False):
        if len(joint_names) != limits.n_joints:
            raise ValueError(f"{len(joint_names)} joint names but limits for "
                             f"{limits.n_joints} joints")
        self.joint_names = tuple(joint_names)
        self.require_measured = require_measured
        self.law = law
        self.muscle_names = tuple(muscle_names)
        self.smoother = LowPass(smoothing_time_constant)
        self.safety = SafetyLayer(limits, *self._watch(law))
        self._values: dict[str, dict[str, np.ndarray]] = {}
        self._stamps: dict[str, float] = {}

    def _watch(self, law: AssistLaw) -> tuple[set[str], set[str]]:
        required = set(law.inputs) | ({MEASURED} if self.require_measured else set())
        return required, {MEASURED}

    # -- inputs ----------------------------------------------------------------------------

    def update_estimate(self, now: float, stamp: float, position: np.ndarray,
                        velocity: np.ndarray, torque: np.ndarray) -> str | None:
        """The estimate: angle (rad), velocity (rad/s), net muscle moment (N·m) per joint.
        Returns why it was ignored, or None if accepted."""
        return self._update(ESTIMATE, now, stamp, len(self.joint_names),
                            position=position, velocity=velocity, torque=torque)

    def update_muscles(self, now: float, stamp: float, activation: np.ndarray) -> str | None:
        """Muscle activations (0..1) in ``muscle_names`` order. Returns why it was ignored, or
        None."""
        return self._update(MUSCLES, now, stamp, len(self.muscle_names), activation=activation)

    def update_measured(self, now: float, stamp: float, position: np.ndarray,
                        velocity: np.ndarray) -> str | None:
        """The exoskeleton's measured angle (rad) and velocity (rad/s) per joint. Returns why it
        was ignored, or None."""
        return self._update(MEASURED, now, stamp, len(self.joint_names),
                            position=position, velocity=velocity)

    def _update(self, name: str, now: float, stamp: float, size: int,
                **fields: np.ndarray) -> str | None:
        if not self.safety.advance(now):
            return f"{name} ignored: {self.safety.fault_reason}"
        values = {}
        for field, value in fields.items():
            array = np.asarray(value, dtype=float)
            if array.shape != (size,):
                return f"{name} ignored: {field} has {array.size} values, expected {size}"
            bad = np.flatnonzero(~np.isfinite(array))
            if bad.size:
                reason = f"non-finite {name} {field}[{bad[0]}] = {array[bad[0]]}"
                self.safety.fault(reason)
                return reason
            values[field] = array
        if not math.isfinite(stamp):
            reason = f"non-finite {name} stamp {stamp}"
            self.safety.fault(reason)
            return reason
        last = self._stamps.get(name, -math.inf)
        if stamp <= last:
            return f"{name} ignored: stamp {stamp:.6f} s is not newer than {last:.6f} s"
        self._values[name] = values
        self._stamps[name] = stamp
        self.safety.mark_received(name)
        return None

    # -- commands --------------------------------------------------------------------------

    def request_enable(self, now: float) -> tuple[bool, str]:
        """See :meth:`SafetyLayer.request_enable`."""
        return self.safety.request_enable(now)

    def disable(self, now: float) -> tuple[bool, str]:
        """See :meth:`SafetyLayer.disable`."""
        return self.safety.disable(now)

    def set_estop(self, engaged: bool, now: float) -> None:
        """See :meth:`SafetyLayer.set_estop`."""
        self.safety.set_estop(engaged, now)

    def reset_fault(self, now: float) -> tuple[bool, str]:
        """See :meth:`SafetyLayer.reset_fault`. Clearing a fault also forgets the input stamps,
        so a restarted input stream is accepted again."""
        latched = self.safety.state in (State.FAULTED, State.ESTOP)
        ok, reason = self.safety.reset_fault(now)
        if ok and latched:
            self._stamps.clear()
            self.smoother.reset()
        return ok, reason

    def fault(self, reason: str, immediate: bool = False) -> None:
        """See :meth:`SafetyLayer.fault`."""
        self.safety.fault(reason, immediate)

    def set_limits(self, limits: SafetyLimits) -> str | None:
        """See :meth:`SafetyLayer.set_limits`."""
        return self.safety.set_limits(limits)

    def law_refusal(self, law: AssistLaw, muscle_names: Sequence[str] = ()) -> str | None:
        """Why :meth:`set_law` would refuse now (None if it would not): while enabled a law may
        change its gains but not the inputs or muscles it reads."""
        refusal = self.safety.watch_refusal(self._watch(law)[0])
        if refusal is None and self.safety.state is State.ENABLED \
                and tuple(muscle_names) != self.muscle_names:
            refusal = "the muscles of the assist law cannot change while enabled; disable first"
        return refusal

    def set_law(self, law: AssistLaw, muscle_names: Sequence[str] = (),
                smoothing_time_constant: float | None = None) -> str | None:
        """Swap the assist law (its muscle order, the smoothing) unless :meth:`law_refusal`
        objects (its reason is returned)."""
        refusal = self.law_refusal(law, muscle_names)
        if refusal is not None:
            return refusal
        self.safety.set_watched(*self._watch(law))
        self.law = law
        if tuple(muscle_names) != self.muscle_names:
            self.muscle_names = tuple(muscle_names)
            self._values.pop(MUSCLES, None)
            self._stamps.pop(MUSCLES, None)
        if smoothing_time_constant is not None \
                and smoothing_time_constant != self.smoother.time_constant:
            self.smoother = LowPass(smoothing_time_constant)
        return None

    # -- the step --------------------------------------------------------------------------

    def step(self, now: float) -> StepOutput:
        """One control step at ``now`` (s): law → smoothing → safety layer.

        Steps may come at the control rate or sooner (when an estimate arrives); the smoothing
        runs on the time elapsed since the previous step, so its time constant holds either way.
        """
        self.safety.advance(now)
        dt = self.safety.since_last_step()
        if dt is None:
            dt = 1.0 / self.safety.limits.control_rate
        n = len(self.joint_names)
        estimate = self._values.get(ESTIMATE)
        measured = self._values.get(MEASURED) if self.safety.is_fresh(MEASURED) else None
        desired = None
        if estimate is not None:
            desired = self._desired(estimate, measured, dt)
        gate = measured or estimate or {}
        out = self.safety.step(now, desired, gate.get("position"), gate.get("velocity"))
        human = estimate["torque"] if estimate is not None else np.zeros(n)
        return StepOutput(self._stamps.get(ESTIMATE, math.nan), human.copy(),
                          np.zeros(n) if desired is None else desired.copy(), out)

    def _desired(self, estimate: dict[str, np.ndarray],
                 measured: dict[str, np.ndarray] | None, dt: float) -> np.ndarray | None:
        muscles = self._values.get(MUSCLES)
        inputs = LawInputs(
            estimate["position"], estimate["velocity"], estimate["torque"],
            activation=None if muscles is None else muscles["activation"],
            meas_position=None if measured is None else measured["position"],
            meas_velocity=None if measured is None else measured["velocity"],
        )
        with np.errstate(over="ignore", invalid="ignore"):
            raw = self.law(inputs)
            if raw is None:
                return None
            smoothed = self.smoother(raw, dt)
        if not np.all(np.isfinite(smoothed)):
            self.smoother.reset()
            self.safety.fault(f"assist law gave a non-finite torque {smoothed.tolist()}")
            return None
        return smoothed
