"""The safety layer between an assist law and the motor: an explicit state machine plus limits.

States (values match ``AssistState.STATE_*``)::

    DISABLED --request_enable (inputs fresh, no latch)--> ENABLED --disable--> DISABLED
    ENABLED/DISABLED --fault (stale input, non-finite value, clock anomaly)--> FAULTED
    any --e-stop--> ESTOP
    FAULTED --reset_fault (ramp finished)--> DISABLED
    ESTOP --reset_fault (e-stop released)--> DISABLED

What the command is on each step:

- DISABLED, ESTOP: exactly zero. Entering either zeroes the command at once, overriding the
  slew-rate limit (an e-stop or a disable removes torque now, it does not ramp).
- FAULTED: a linear ramp from the command at the fault to zero, reaching zero
  ``fault_ramp_time`` s of control-clock time after the fault. :class:`SafetyLimits` guarantees
  max_torque / fault_ramp_time <= max_torque_rate, so the ramp never breaks the slew limit in
  force at the fault. A clock anomaly has no time to ramp on: that fault zeroes the command at
  once. During the ramp:

  * its envelope never rises: the command's magnitude never exceeds the previous step's, the
    ramp from the fault, nor max_torque (a lowered max_torque clamps it at once, and limits
    cannot be loosened again until the fault is reset: see below);
  * limits changed during the ramp change neither its length nor its slope;
  * the gates act as when enabled: within range_margin of a range end, or above max_velocity
    along the motion, a torque toward that end (or along the motion) decays at the slew rate,
    and at or past the end itself it is cut at once.

- ENABLED: desired torque → clamp to ±max_torque → range-of-motion gate → velocity gate →
  slew-rate limit against the previous command → clamp again (the hard limit; it acts only if
  max_torque was lowered since the previous step) → range-of-motion cut. Enabling starts from zero
  torque. The gates set the *target* of the slew limiter: within range_margin of a range end a
  torque toward that end decays at the slew rate. At or past the end itself such a torque is cut
  at once, whatever the slew limit.

Limits can be tightened in any state but loosened only while DISABLED: never while enabled,
during a fault ramp or under a latched fault or e-stop.

Every method takes the time ``now`` (s) explicitly; nothing here reads a clock. Time must not go
backwards: a ``now`` earlier than the latest one seen, or a non-finite one, latches a fault that
zeroes the command at once, and that call's time is ignored; a reset asked for at such a time is
refused, so the fault it raised stays latched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from emg_msk_ros.control.limits import SafetyLimits, loosened


class State(IntEnum):
    """Controller state; values equal the ``AssistState.STATE_*`` constants."""

    DISABLED = 0
    ENABLED = 1
    FAULTED = 2
    ESTOP = 3


def clamp(u: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip torque ``u`` to ±``limit`` (N·m); returns (torque, per-joint flag "was clipped")."""
    out = np.minimum(np.maximum(u, -limit), limit)  # np.clip, without its Python overhead
    return out, out != u


def range_gate(u: np.ndarray, position: np.ndarray, low: np.ndarray, high: np.ndarray,
               margin: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Within ``margin`` (rad) of a range end, or beyond it, keep only torque pointing away from
    that end; returns (torque, per-joint flag "was gated")."""
    out = np.where(position >= high - margin, np.minimum(u, 0.0), u)
    out = np.where(position <= low + margin, np.maximum(out, 0.0), out)
    return out, out != u


def velocity_gate(u: np.ndarray, velocity: np.ndarray,
                  max_velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Above ``max_velocity`` (rad/s) in magnitude, drop torque that pushes along the motion and
    keep torque that brakes it; returns (torque, per-joint flag "was gated")."""
    along = (np.abs(velocity) > max_velocity) & (np.sign(u) * np.sign(velocity) > 0.0)
    out = np.where(along, 0.0, u)
    return out, along


def slew_limit(u: np.ndarray, previous: np.ndarray, max_rate: np.ndarray,
               dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Limit the change from ``previous`` to ``max_rate`` (N·m/s) × ``dt`` (s); returns (torque,
    per-joint flag "was limited")."""
    step = max_rate * dt
    out = np.minimum(np.maximum(u, previous - step), previous + step)
    return out, out != u


@dataclass(frozen=True)
class SafetyOutput:
    """The result of one safety step. ``command`` is N·m per joint; the flags are per joint and
    say which limit shaped it; ``stale_inputs`` names the inputs older than the watchdog limit."""

    command: np.ndarray
    state: State
    fault_reason: str
    saturated: np.ndarray
    rate_limited: np.ndarray
    range_limited: np.ndarray
    velocity_limited: np.ndarray
    stale_inputs: tuple[str, ...]


class SafetyLayer:
    """Watchdog, state machine and torque limits for ``limits.n_joints`` joints.

    ``required`` inputs are always watched. ``optional`` inputs are watched while enabled only
    if they were fresh when the controller was enabled (so an exoskeleton that publishes its
    joint state must keep doing so). An input is stale once it is older than
    ``limits.stale_after``; a watched stale input while enabled latches a fault.
    """

    def __init__(self, limits: SafetyLimits, required: Iterable[str],
                 optional: Iterable[str] = ()):
        self.limits = limits
        self.required = frozenset(required)
        self.optional = frozenset(optional) - self.required
        self.state = State.DISABLED
        self.fault_reason = ""
        self.estop_engaged = False
        self.command = np.zeros(limits.n_joints)
        self._zero = np.zeros(limits.n_joints, dtype=bool)
        self._received: dict[str, float] = {}
        self._armed_optional: set[str] = set()
        self._clock = -math.inf
        self._last_step = -math.inf
        self._ramp_from = self.command
        self._fault_time = 0.0
        self._ramp_time = limits.fault_ramp_time  # s, of the ramp in progress

    # -- time and inputs -------------------------------------------------------------------

    def advance(self, now: float) -> bool:
        """Move the clock to ``now`` (s). A non-finite or earlier time latches a fault and is
        ignored; returns whether ``now`` was accepted."""
        anomaly = self._clock_anomaly(now)
        if anomaly:
            self.fault(anomaly, immediate=True)
            return False
        self._clock = now
        return True

    def _clock_anomaly(self, now: float) -> str:
        """What is wrong with time ``now`` (s): non-finite or earlier than the clock; "" if
        nothing."""
        if not math.isfinite(now):
            return f"non-finite time {now}"
        if now < self._clock:
            return f"clock went backwards by {self._clock - now:.6g} s"
        return ""

    def since_last_step(self) -> float | None:
        """Seconds from the previous step to the clock, at most ``stale_after``; None before
        the first step."""
        if self._last_step == -math.inf:
            return None
        return min(self._clock - self._last_step, self.limits.stale_after)

    def mark_received(self, name: str) -> None:
        """Record that input ``name`` arrived at the current clock time (call after advance)."""
        self._received[name] = self._clock
        if name in self.optional and self.state is not State.ENABLED:
            self._armed_optional.add(name)

    def age(self, name: str) -> float:
        """Seconds since input ``name`` last arrived (inf if never)."""
        return self._clock - self._received.get(name, -math.inf)

    def is_fresh(self, name: str) -> bool:
        return self.age(name) <= self.limits.stale_after

    def stale_inputs(self) -> tuple[str, ...]:
        """Watched inputs that are stale now, sorted by name."""
        watched = self.required | self._armed_optional
        return tuple(sorted(n for n in watched if not self.is_fresh(n)))

    def _staleness(self, name: str) -> str:
        if name not in self._received:
            return f"no {name} received yet"
        return (f"{name} is {self.age(name) * 1e3:.1f} ms old "
                f"(limit {self.limits.stale_after * 1e3:.1f} ms)")

    # -- transitions -----------------------------------------------------------------------

    def fault(self, reason: str, immediate: bool = False) -> None:
        """Latch a fault (the first reason is kept; no effect in ESTOP). The command ramps to zero
        from its current value, or is zeroed at once if ``immediate`` (when the caller has
        already sent zero, e.g. after an exception in the control loop, or when the clock cannot
        time a ramp)."""
        if self.state is State.ESTOP:
            return
        if self.state is not State.FAULTED:
            self.state = State.FAULTED
            self.fault_reason = reason
            self._start_ramp()
        if immediate:
            self.command = np.zeros(self.limits.n_joints)
            self._start_ramp()

    def _start_ramp(self) -> None:
        self._ramp_from = clamp(self.command, self.limits.max_torque)[0]
        self._fault_time = self._clock
        self._ramp_time = self.limits.fault_ramp_time

    def request_enable(self, now: float) -> tuple[bool, str]:
        """Try DISABLED → ENABLED; returns (accepted, reason). Refused while a fault or e-stop
        is latched, the e-stop is engaged, or a required input is missing or stale."""
        self.advance(now)
        if self.state is State.ENABLED:
            return True, "already enabled"
        if self.state in (State.FAULTED, State.ESTOP):
            return False, f"fault latched ({self.fault_reason}); call reset_fault first"
        if self.estop_engaged:
            return False, "e-stop is engaged"
        problems = [self._staleness(n) for n in sorted(self.required) if not self.is_fresh(n)]
        if problems:
            return False, "inputs not ready: " + "; ".join(problems)
        self._armed_optional = {n for n in self.optional if self.is_fresh(n)}
        self.state = State.ENABLED
        self.command = np.zeros(self.limits.n_joints)
        unused = sorted(self.optional - self._armed_optional)
        return True, "enabled" + (f" (not present: {', '.join(unused)})" if unused else "")

    def disable(self, now: float) -> tuple[bool, str]:
        """ENABLED → DISABLED with zero torque at once; a latched fault or e-stop stays."""
        self.advance(now)
        if self.state is State.ENABLED:
            self.state = State.DISABLED
            self.command = np.zeros(self.limits.n_joints)
            return True, "disabled"
        if self.state is State.DISABLED:
            return True, "already disabled"
        return True, f"{self.state.name.lower()} stays latched ({self.fault_reason})"

    def set_estop(self, engaged: bool, now: float) -> None:
        """Record the e-stop signal. Engaging it enters ESTOP and zeroes the command at once;
        releasing it does not unlatch (call :meth:`reset_fault`)."""
        self.advance(now)
        self.estop_engaged = bool(engaged)
        if engaged and self.state is not State.ESTOP:
            self.state = State.ESTOP
            self.fault_reason = "e-stop engaged"
            self.command = np.zeros(self.limits.n_joints)

    def reset_fault(self, now: float) -> tuple[bool, str]:
        """FAULTED/ESTOP → DISABLED; returns (accepted, reason). Refused while the e-stop is
        still engaged, the fault ramp has not reached zero, or ``now`` is a clock anomaly (which
        itself latches a fault)."""
        anomaly = self._clock_anomaly(now)
        if not self.advance(now):
            return False, (f"refused: {anomaly}; {self.state.name.lower()} stays latched "
                           f"({self.fault_reason})")
        if self.state is State.ESTOP and self.estop_engaged:
            return False, "e-stop is still engaged; release it first"
        if self.state is State.FAULTED and np.any(self.command != 0.0):
            return False, (f"still ramping to zero (|command| up to "
                           f"{np.max(np.abs(self.command)):.3g} N·m)")
        if self.state not in (State.FAULTED, State.ESTOP):
            return True, "no fault latched"
        cleared = self.fault_reason
        self.state = State.DISABLED
        self.fault_reason = ""
        self.command = np.zeros(self.limits.n_joints)
        return True, f"cleared: {cleared}"

    def limits_refusal(self, limits: SafetyLimits) -> str | None:
        """Why :meth:`set_limits` would refuse ``limits`` now (None if it would not): a different
        joint count, or relaxing any limit in any state but DISABLED (tightening is always
        allowed)."""
        if limits.n_joints != self.limits.n_joints:
            return (f"limits are for {limits.n_joints} joints, the controller has "
                    f"{self.limits.n_joints}")
        relaxed = loosened(self.limits, limits) if self.state is not State.DISABLED else []
        if relaxed:
            return (f"cannot relax limits while {self.state.name.lower()} (only while "
                    "disabled): " + ", ".join(relaxed))
        return None

    def set_limits(self, limits: SafetyLimits) -> str | None:
        """Replace the limits unless :meth:`limits_refusal` objects (its reason is returned). A
        fault ramp in progress keeps its start, length and slope; a lower max_torque clamps it."""
        refusal = self.limits_refusal(limits)
        if refusal is None:
            self.limits = limits
        return refusal

    def watch_refusal(self, required: Iterable[str]) -> str | None:
        """Why :meth:`set_watched` would refuse: changing the required inputs while enabled."""
        if self.state is State.ENABLED and frozenset(required) != self.required:
            return "the required inputs cannot change while enabled; disable first"
        return None

    def set_watched(self, required: Iterable[str], optional: Iterable[str] = ()) -> str | None:
        """Change which inputs are watched unless :meth:`watch_refusal` objects."""
        refusal = self.watch_refusal(required)
        if refusal is None:
            self.required = frozenset(required)
            self.optional = frozenset(optional) - self.required
            self._armed_optional &= set(self.optional)
        return refusal

    # -- the control step ------------------------------------------------------------------

    def step(self, now: float, desired: np.ndarray | None, position: np.ndarray | None,
             velocity: np.ndarray | None) -> SafetyOutput:
        """One control step at time ``now`` (s): check the watchdog and the inputs, then turn the
        ``desired`` torque (N·m; None if the law has nothing) into the command, using
        ``position`` (rad) and ``velocity`` (rad/s) for the gates."""
        self.advance(now)
        dt = self.since_last_step() or 0.0
        self._last_step = max(self._last_step, self._clock)
        stale = self.stale_inputs()
        if self.state is State.ENABLED:
            problem = self._check(stale, desired, position, velocity)
            if problem:
                self.fault(problem)
        flags = (self._zero,) * 4
        if self.state is State.ENABLED:
            limits = self.limits
            u, saturated = clamp(desired, limits.max_torque)
            u, rated, ranged, fast = self._gated_slew(u, position, velocity, dt)
            u, hard = clamp(u, limits.max_torque)
            u, cut = range_gate(u, position, limits.position_min, limits.position_max, 0.0)
            self.command = u
            flags = (saturated | hard, rated, ranged | cut, fast)
        elif self.state is State.FAULTED:
            self.command, flags = self._ramp_step(position, velocity, dt)
        else:
            self.command = np.zeros(self.limits.n_joints)
        return SafetyOutput(self.command.copy(), self.state, self.fault_reason, *flags, stale)

    def _gated_slew(self, u: np.ndarray, position: np.ndarray, velocity: np.ndarray,
                    dt: float) -> tuple[np.ndarray, ...]:
        """Range and velocity gates on the target ``u`` (N·m), then the slew limit from the
        previous command; returns (torque, rate-limited, range-gated, velocity-gated) flags."""
        limits = self.limits
        u, ranged = range_gate(u, position, limits.position_min, limits.position_max,
                               limits.range_margin)
        u, fast = velocity_gate(u, velocity, limits.max_velocity)
        u, rated = slew_limit(u, self.command, limits.max_torque_rate, dt)
        return u, rated, ranged, fast

    def _ramp_step(self, position: np.ndarray | None, velocity: np.ndarray | None,
                   dt: float) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The fault ramp's command (N·m) and limit flags: the linear ramp from the fault,
        clamped to max_torque, gated like an enabled command (while the position and velocity
        are known and finite), and never larger in magnitude than the previous command."""
        elapsed = self._clock - self._fault_time
        remaining = max(0.0, 1.0 - elapsed / self._ramp_time)
        ramp, saturated = clamp(self._ramp_from * remaining, self.limits.max_torque)
        u, rated, ranged, fast = ramp, self._zero, self._zero, self._zero
        known = position is not None and velocity is not None \
            and np.all(np.isfinite(position)) and np.all(np.isfinite(velocity))
        if known:
            u, rated, ranged, fast = self._gated_slew(ramp, position, velocity, dt)
            limits = self.limits
            u, cut = range_gate(u, position, limits.position_min, limits.position_max, 0.0)
            ranged = ranged | cut
        # The envelope never rises: same sign as the ramp, no larger than it or the last command.
        bound = np.minimum(np.abs(ramp), np.abs(self.command))
        u = np.sign(ramp) * np.minimum(np.abs(u), bound)
        return u, (saturated, rated, ranged, fast)

    def _check(self, stale: tuple[str, ...], desired: np.ndarray | None,
               position: np.ndarray | None, velocity: np.ndarray | None) -> str:
        if stale:
            return "watchdog: " + "; ".join(self._staleness(n) for n in stale)
        for name, value in (("desired torque", desired), ("gate position", position),
                            ("gate velocity", velocity)):
            if value is None:
                return f"no {name} available"
            if not np.all(np.isfinite(value)):
                return f"non-finite {name}: {value.tolist()}"
        return ""
