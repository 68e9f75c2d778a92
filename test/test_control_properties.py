"""Property tests of the controller + safety layer over long random input sequences.

A :class:`Harness` drives an :class:`AssistController` with operations (time advancing, forwards,
not at all or backwards; estimates, muscle states and measured joint states carrying NaN, Inf,
huge values and stamps that go backwards, positions near and past the range ends; enable,
disable, e-stop, reset; new limits, tighter or looser, range ends moved) and steps it after every
operation. After every step, in every state, it checks against its own small model of the
inputs:

1. the command is finite and |command| <= max_torque in force;
2. zero while DISABLED or ESTOP;
3. |Δcommand| <= max_torque_rate · dt (during a fault ramp, the rate in force at the fault),
   except that entering DISABLED or ESTOP, a clock that goes backwards and reaching a range end
   (for torque toward it) zero it at once, and a lowered max_torque clamps it at once;
4. during a fault ramp the envelope never rises: |command| <= the previous command, the same
   sign, and <= |command at the fault| · (1 - elapsed / fault_ramp_time at the fault); it is zero
   fault_ramp_time after the fault, whatever the limits became since;
5. new limits are refused exactly when they relax one in any state but DISABLED;
6. near a range end or above max_velocity (along the motion) the command never grows in the
   gated direction, and at or past an end it does not push toward it (ENABLED and FAULTED);
7. the state changes only along the allowed transitions, enable is accepted exactly when the
   required inputs are fresh and nothing is latched, a stale input never stays ENABLED, and a
   reset at a refused time (clock anomaly) never clears a latch.

Three tests use it: operation lists drawn by hypothesis (fine shrinking, up to ~80 operations),
long seeded streams (thousands of operations) whose scenario, anomaly rates and length hypothesis
draws (shrinking shortens the stream), and seeded fault episodes (assist at full torque, then a
fault, then limit changes, positions near and past the ends, fast motion, clock anomalies,
e-stops and resets during the ramp). ``SAFETY_EXAMPLES`` (environment) multiplies the number of
examples of each, for long soak runs.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emg_msk_ros.control.controller import AssistController
from emg_msk_ros.control.laws import ESTIMATE, LAW_NAMES, MEASURED, MUSCLES, make_law
from emg_msk_ros.control.limits import LimitError, SafetyLimits, loosened
from emg_msk_ros.control.safety import State

JOINTS = ["hip", "knee"]
FLEXORS = ["hip:iliacus", "knee:biceps_femoris", "knee:semitendinosus"]
EXTENSORS = ["hip:gluteus_maximus", "knee:vastus_lateralis"]
N_MUSCLES = 5
SPECIALS = (math.nan, math.inf, -math.inf, 1e308, -1e308, 1e200)
# (low, high) of the ordinary values of each input field
RANGES = {"position": (-1.5, 3.5), "velocity": (-12.0, 12.0), "torque": (-150.0, 150.0),
          "activation": (0.0, 1.0)}
TOL = 1e-9
SCALE = int(os.environ.get("SAFETY_EXAMPLES", "1"))  # example-count multiplier for soak runs


@dataclass(frozen=True)
class Scenario:
    law: str
    limits: dict
    require_measured: bool
    smoothing: float


@dataclass(frozen=True)
class Op:
    kind: str  # advance | estimate | muscles | measured | enable | disable | estop | reset | limits
    dt: float = 0.0  # advance: s; input ops: the stamp step (s)
    values: tuple = ()  # input ops: one tuple per field; limits: factors (SCALED order), then
    #                     shifts (rad) of position_min and position_max
    engaged: bool = False  # estop


FIELDS = {"estimate": ("position", "velocity", "torque"), "muscles": ("activation",),
          "measured": ("position", "velocity")}
INPUT_NAME = {"estimate": ESTIMATE, "muscles": MUSCLES, "measured": MEASURED}
SCALED = ("max_torque", "max_torque_rate", "fault_ramp_time", "range_margin")  # limits ops
FACTORS = (0.5, 1.0, 2.0)
SHIFTS = (-0.1, 0.0, 0.1)  # rad, moves of the range ends in limits ops
ALLOWED = {  # (before, after) -> operations that may cause it; None: any operation or a step
    (State.DISABLED, State.ENABLED): {"enable"},
    (State.ENABLED, State.DISABLED): {"disable"},
    (State.DISABLED, State.FAULTED): None,
    (State.ENABLED, State.FAULTED): None,
    (State.FAULTED, State.DISABLED): {"reset"},
    (State.ESTOP, State.DISABLED): {"reset"},
}


class Harness:
    """Runs operations on a controller and checks every step against a model of its inputs."""

    def __init__(self, scenario: Scenario):
        self.limits = SafetyLimits.from_values(scenario.limits, len(JOINTS))
        self.initial_limits = self.limits
        self.fault_limits = self.limits  # in force at the latest fault
        law, muscles = make_law(scenario.law, {}, JOINTS, FLEXORS, EXTENSORS)
        self.controller = AssistController(JOINTS, law, self.limits, muscles,
                                           scenario.smoothing, scenario.require_measured)
        self.required = set(law.inputs) | ({MEASURED} if scenario.require_measured else set())
        self.now = 0.0
        self.clock = -math.inf  # the latest accepted time
        self.next_stamp = {name: 0.0 for name in INPUT_NAME.values()}
        self.last_stamp: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.latest: dict[str, dict[str, np.ndarray]] = {}
        self.armed: set[str] = set()
        self.estop = False
        self.reference = np.zeros(len(JOINTS))  # the command the next step is limited against
        self.last_step_clock = -math.inf
        self.fault_step_clock: float | None = None
        self.ramp_from = np.zeros(len(JOINTS))  # the command at the latest fault (N·m)
        self.fault_clock = 0.0
        self.state = State.DISABLED
        self.counts = {state: 0 for state in State}
        self.faults: list[str] = []
        self.events: Counter[str] = Counter()  # what the checks met, for the coverage tests

    # -- the model -------------------------------------------------------------------------

    def _tick(self) -> bool:
        accepted = self.now >= self.clock
        self.clock = max(self.clock, self.now)
        if not accepted:  # a clock anomaly faults with zero torque at once
            self.reference = np.zeros(len(JOINTS))
            self.ramp_from = np.zeros(len(JOINTS))
        return accepted

    def fresh(self, name: str) -> bool:
        return self.clock - self.received.get(name, -math.inf) <= self.limits.stale_after

    def _transition(self, new: State, cause: str) -> None:
        if new != self.state:
            if new is State.ESTOP:
                assert cause == "estop", f"entered ESTOP on {cause}"
            else:
                allowed = ALLOWED.get((self.state, new), set())
                assert allowed is None or cause in allowed, \
                    f"{self.state.name} -> {new.name} on {cause}"
            if new is State.FAULTED:
                self.faults.append(self.controller.safety.fault_reason)
                self.fault_limits = self.limits
                self.ramp_from = np.clip(self.reference, -self.limits.max_torque,
                                         self.limits.max_torque)
                self.fault_clock = self.clock
            else:
                self.fault_step_clock = None
        self.state = new

    # -- operations ------------------------------------------------------------------------

    def apply(self, op: Op) -> None:
        c = self.controller
        if op.kind == "advance":
            self.now += op.dt
        elif op.kind in FIELDS:
            self._input(op)
        elif op.kind == "enable":
            clock_ok = self._tick()
            expect = self.state is State.ENABLED or (
                clock_ok and self.state is State.DISABLED and not self.estop
                and all(self.fresh(n) for n in self.required))
            ok, reason = c.request_enable(self.now)
            assert ok == expect, (reason, self.state, self.estop)
            if ok and self.state is State.DISABLED:
                assert np.all(self.reference == 0.0)
                self.armed = {n for n in (MEASURED,) if self.fresh(n)} - self.required
        elif op.kind == "disable":
            was_enabled = self.state is State.ENABLED
            self._tick()
            c.disable(self.now)
            if was_enabled and c.safety.state is State.DISABLED:
                self.reference = np.zeros(len(JOINTS))
        elif op.kind == "estop":
            self._tick()
            c.set_estop(op.engaged, self.now)
            self.estop = op.engaged
            if op.engaged:
                self.reference = np.zeros(len(JOINTS))
        elif op.kind == "limits":
            self._tick()
            base = self.initial_limits
            values = {name: np.atleast_1d(getattr(base, name)) * factor
                      for name, factor in zip(SCALED, op.values)}
            shifts = op.values[len(SCALED):] or (0.0, 0.0)
            values["position_min"] = base.position_min + shifts[0]
            values["position_max"] = base.position_max + shifts[1]
            try:
                new = SafetyLimits.from_values(
                    {**{n: v.tolist() if v.size > 1 else float(v[0]) for n, v in values.items()},
                     "max_velocity": base.max_velocity.tolist(),
                     "watchdog_timeout": base.watchdog_timeout,
                     "control_rate": base.control_rate}, len(JOINTS))
            except LimitError:  # an inconsistent draw: nothing to apply
                new = None
            if new is not None:
                relaxed = loosened(self.limits, new) if self.state is not State.DISABLED else []
                reason = c.set_limits(new)
                assert (reason is None) == (not relaxed), (reason, relaxed)
                self.events[f"limits {'refused' if reason else 'accepted'} "
                            f"while {self.state.name}"] += 1
                if reason is None:
                    self.limits = new
        elif op.kind == "reset":
            clock_ok = self._tick()
            before = self.state
            ok, reason = c.reset_fault(self.now)
            if before is State.ESTOP and self.estop:
                assert not ok, reason
            if not clock_ok:
                assert not ok and c.safety.state in (State.FAULTED, State.ESTOP), reason
            if ok and before in (State.FAULTED, State.ESTOP):
                assert np.all(self.reference == 0.0), "reset before the ramp reached zero"
                self.last_stamp.clear()
        self._transition(c.safety.state, op.kind)
        self.step()

    def _input(self, op: Op) -> None:
        name = INPUT_NAME[op.kind]
        stamp = self.next_stamp[name] + op.dt
        self.next_stamp[name] = stamp
        arrays = {f: np.array(v, dtype=float) for f, v in zip(FIELDS[op.kind], op.values)}
        clock_ok = self._tick()
        size = len(self.controller.muscle_names) if name == MUSCLES else len(JOINTS)
        shaped = all(a.size == size for a in arrays.values())
        finite = math.isfinite(stamp) and all(np.isfinite(a).all() for a in arrays.values())
        newer = stamp > self.last_stamp.get(name, -math.inf)
        method = getattr(self.controller, f"update_{op.kind}")
        reason = method(self.now, stamp, *arrays.values())
        assert (reason is None) == (clock_ok and shaped and finite and newer), reason
        if reason is None:
            self.last_stamp[name] = stamp
            self.received[name] = self.clock
            self.latest[name] = arrays
            if name == MEASURED and self.state is not State.ENABLED:
                self.armed.add(name)
        elif not clock_ok or (shaped and not finite):
            assert self.controller.safety.state in (State.FAULTED, State.ESTOP)

    # -- the checks ------------------------------------------------------------------------

    def step(self) -> None:
        self._tick()
        out = self.controller.step(self.now)
        self._transition(out.safety.state, "step")
        self.counts[self.state] += 1
        u, ref = out.command, self.reference
        dt = self.clock - self.last_step_clock if self.last_step_clock > -math.inf else 0.0
        self.last_step_clock = self.clock
        lim = self.limits
        assert np.isfinite(u).all() and np.isfinite(out.desired_torque).all()
        assert np.isfinite(out.human_torque).all()
        assert np.all(np.abs(u) <= lim.max_torque * (1 + TOL))
        if self.state in (State.DISABLED, State.ESTOP):
            assert np.all(u == 0.0)
        else:
            rate = (self.fault_limits if self.state is State.FAULTED else lim).max_torque_rate
            slewed = np.abs(u - ref) <= rate * dt + TOL * (1 + np.abs(ref))
            slewed |= np.abs(ref) > lim.max_torque  # max_torque lowered: clamped at once
            if self._gate() is not None:
                at_high, at_low = self._at_ends()
                slewed |= (u == 0.0) & ((at_high & (ref > 0)) | (at_low & (ref < 0)))
            assert np.all(slewed)
        if self.state is State.FAULTED:
            if self.fault_step_clock is None:
                self.fault_step_clock = self.clock
            assert np.all(np.abs(u) <= np.abs(ref) + TOL) and np.all(u * ref >= 0.0), \
                "the fault ramp rose"
            left = max(0.0, 1.0 - (self.clock - self.fault_clock)
                       / self.fault_limits.fault_ramp_time)
            assert np.all(np.abs(u) <= np.abs(self.ramp_from) * left + TOL), \
                "above the ramp from the fault"
            if self.clock - self.fault_step_clock >= self.fault_limits.fault_ramp_time:
                assert np.all(u == 0.0), "fault ramp did not reach zero in fault_ramp_time"
        if self.state is State.ENABLED:
            watched = self.required | self.armed
            assert all(self.fresh(n) for n in watched), "ENABLED with a stale input"
        if self.state in (State.ENABLED, State.FAULTED) and self._gate() is not None:
            self._check_gates(u, ref)
        self.reference = u.copy()

    def _gate(self) -> dict[str, np.ndarray] | None:
        """The position and velocity the gates use: measured when fresh, else the estimate
        (None before either arrived)."""
        return self.latest.get(MEASURED if self.fresh(MEASURED) else ESTIMATE)

    def _at_ends(self) -> tuple[np.ndarray, np.ndarray]:
        position = self._gate()["position"]
        return position >= self.limits.position_max, position <= self.limits.position_min

    def _check_gates(self, u: np.ndarray, ref: np.ndarray) -> None:
        lim = self.limits
        gate = self._gate()
        position, velocity = gate["position"], gate["velocity"]
        up = np.maximum(ref, 0.0) + TOL
        down = np.minimum(ref, 0.0) - TOL
        near_high = position >= lim.position_max - lim.range_margin
        near_low = position <= lim.position_min + lim.range_margin
        fast = np.abs(velocity) > lim.max_velocity
        no_more_positive = near_high | (fast & (velocity > 0))
        no_more_negative = near_low | (fast & (velocity < 0))
        assert np.all(u[no_more_positive] <= up[no_more_positive])
        assert np.all(u[no_more_negative] >= down[no_more_negative])
        at_high, at_low = self._at_ends()
        assert np.all(u[at_high] <= 0.0) and np.all(u[at_low] >= 0.0), \
            f"pushing past an end while {self.state.name}"
        toward = (at_high & (ref > 0)) | (at_low & (ref < 0))
        self.events[f"{self.state.name} at an end pushing toward it"] += int(toward.any())
        self.events[f"{self.state.name} fast"] += int(fast.any() and np.any(ref != 0.0))


# -- hypothesis: operation lists ---------------------------------------------------------------

def _values(field: str, n: int):
    low, high = RANGES[field]
    ordinary = st.floats(low, high)
    value = st.integers(0, 29).flatmap(
        lambda k: st.sampled_from(SPECIALS) if k == 0 else ordinary)
    return st.tuples(*[value] * n)


def _input_op(kind: str):
    n = {"estimate": len(JOINTS), "muscles": N_MUSCLES, "measured": len(JOINTS)}[kind]
    stamp_step = st.one_of(st.floats(1e-4, 0.05), st.sampled_from([0.0, -0.01, -1.0]))
    return st.builds(lambda dt, *values: Op(kind, dt, values), stamp_step,
                     *[_values(f, n) for f in FIELDS[kind]])


def _advance():
    return st.one_of(st.floats(1e-4, 0.02), st.floats(1e-4, 0.02), st.floats(0.02, 0.5),
                     st.sampled_from([0.0, -0.003, -0.2])).map(lambda dt: Op("advance", dt))


OPS = st.one_of(
    _advance(), _advance(), _input_op("estimate"), _input_op("estimate"), _input_op("muscles"),
    _input_op("measured"), st.just(Op("enable")), st.just(Op("enable")), st.just(Op("disable")),
    st.booleans().map(lambda e: Op("estop", engaged=e)), st.just(Op("reset")),
    st.tuples(*[st.sampled_from(FACTORS)] * len(SCALED), *[st.sampled_from(SHIFTS)] * 2)
    .map(lambda f: Op("limits", values=f)),
)


@st.composite
def scenarios(draw) -> Scenario:
    max_torque = draw(st.floats(0.5, 40.0))
    ramp = draw(st.floats(0.05, 0.5))
    rate = max_torque / ramp * draw(st.floats(1.0, 2.5))
    low = draw(st.floats(-1.0, 0.5))
    limits = {"max_torque": max_torque, "max_torque_rate": rate, "fault_ramp_time": ramp,
              "position_min": low, "position_max": low + draw(st.floats(0.5, 3.0)),
              "range_margin": draw(st.floats(0.0, 0.2)),
              "max_velocity": draw(st.floats(0.5, 10.0)),
              "watchdog_timeout": draw(st.floats(0.01, 0.2)),
              "control_rate": draw(st.sampled_from([50.0, 200.0, 1000.0]))}
    return Scenario(draw(st.sampled_from(LAW_NAMES)), limits, draw(st.booleans()),
                    draw(st.sampled_from([0.0, 0.01, 0.1])))


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.lists(OPS, min_size=1, max_size=80))
def test_every_step_respects_the_limits_for_drawn_operations(scenario, ops):
    harness = Harness(scenario)
    for op in ops:
        harness.apply(op)


# -- hypothesis: long seeded streams -----------------------------------------------------------

def _input_values(rng: np.random.Generator, kind: str, anomaly: float,
                  ends: tuple[float, float]) -> tuple:
    """Values of one input op: ordinary ranges, a third of the positions within 0.3 rad of a
    range end (either side), and special values with probability ``anomaly`` / 4 each."""
    n_values = N_MUSCLES if kind == "muscles" else len(JOINTS)
    values = []
    for field in FIELDS[kind]:
        v = rng.uniform(*RANGES[field], size=n_values)
        if field == "position":
            near = rng.random(n_values) < 1 / 3
            v[near] = rng.choice(ends, size=int(near.sum())) + rng.uniform(-0.3, 0.3,
                                                                           int(near.sum()))
        special = rng.random(n_values) < anomaly / 4
        v[special] = rng.choice(SPECIALS, size=int(special.sum()))
        values.append(tuple(v))
    return tuple(values)


def _limits_op(rng: np.random.Generator) -> Op:
    return Op("limits", values=tuple(rng.choice(FACTORS, size=len(SCALED)).tolist()
                                     + rng.choice(SHIFTS, size=2).tolist()))


def _ends(scenario: Scenario) -> tuple[float, float]:
    limits = SafetyLimits.from_values(scenario.limits, len(JOINTS))
    return float(limits.position_min[0]), float(limits.position_max[0])


def random_ops(rng: np.random.Generator, n: int, anomaly: float, period: float,
               ends: tuple[float, float]):
    """A stream of ``n`` operations that looks like a live session with faults mixed in:
    ``anomaly`` is the probability of each kind of trouble (special value, stamp or clock going
    backwards, stall, e-stop); ``period`` the typical time step (s); ``ends`` the range ends
    (rad) that positions crowd around."""
    kinds = ["advance", "estimate", "muscles", "measured", "enable", "disable", "estop", "reset",
             "limits"]
    weights = np.array([30, 25, 12, 12, 6, 2, 2, 4, 3], dtype=float)
    for kind in rng.choice(kinds, size=n, p=weights / weights.sum()):
        if kind == "advance":
            r = rng.random()
            dt = (-rng.uniform(0, 0.1) if r < anomaly
                  else rng.uniform(0.05, 0.5) if r < 2 * anomaly
                  else rng.uniform(0.2, 1.8) * period)
            yield Op("advance", dt)
        elif kind in FIELDS:
            dt = -rng.uniform(0, 0.05) if rng.random() < anomaly else rng.uniform(0.2, 1.8) * period
            yield Op(kind, dt, _input_values(rng, kind, anomaly, ends))
        elif kind == "estop":
            yield Op("estop", engaged=bool(rng.random() < anomaly * 5))
        elif kind == "limits":
            yield _limits_op(rng)
        else:
            yield Op(kind)


@settings(max_examples=25 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**32 - 1), st.integers(1, 4000),
       st.sampled_from([0.0, 0.002, 0.01, 0.05]))
def test_every_step_respects_the_limits_over_long_streams(scenario, seed, n_ops, anomaly):
    harness = Harness(scenario)
    period = 1.0 / scenario.limits["control_rate"]
    for op in random_ops(np.random.default_rng(seed), n_ops, anomaly, period, _ends(scenario)):
        harness.apply(op)


# -- seeded fault episodes: what happens during a ramp -----------------------------------------

def fault_episodes(rng: np.random.Generator, n: int, period: float, ends: tuple[float, float]):
    """``n`` episodes of: clear any latch, assist with fresh inputs (the torque input near the
    law's largest), then a fault (the estimate stops, turns non-finite, or the clock steps
    back), then the ramp under a mix of limit changes, positions near and past the range ends,
    fast motion, clock anomalies, e-stops, resets and enable requests."""
    def feed(kinds=("estimate", "measured", "muscles"), anomaly=0.0):
        yield Op("advance", rng.uniform(0.5, 1.5) * period)
        for kind in kinds:
            yield Op(kind, rng.uniform(0.5, 1.5) * period,
                     _input_values(rng, kind, anomaly, ends))

    for _ in range(n):
        yield from (Op("estop", engaged=False), Op("advance", 1.0), Op("reset"))
        for _ in range(3):
            yield from feed()
        yield Op("enable")
        for _ in range(rng.integers(5, 60)):
            yield from feed()
        trigger = rng.integers(3)
        if trigger == 1:
            yield from feed(anomaly=4.0)  # every value special: a non-finite input
        elif trigger == 2:
            yield Op("advance", -rng.uniform(0.001, 0.05))
        for _ in range(rng.integers(10, 120)):
            r = rng.random()
            if r < 0.5:
                yield from feed(("measured",))
            elif r < 0.7:
                yield _limits_op(rng)
            elif r < 0.8:
                yield Op("advance", rng.uniform(0.5, 3.0) * period)
            elif r < 0.85:
                yield Op("advance", -rng.uniform(0.0, 0.02))
            elif r < 0.9:
                yield Op("reset")
            elif r < 0.95:
                yield Op("enable")
            else:
                yield Op("estop", engaged=bool(rng.random() < 0.5))


@settings(max_examples=30 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_every_step_respects_the_limits_during_fault_ramps(scenario, seed, n_episodes):
    harness = Harness(scenario)
    period = 1.0 / scenario.limits["control_rate"]
    for op in fault_episodes(np.random.default_rng(seed), n_episodes, period, _ends(scenario)):
        harness.apply(op)


def test_long_streams_reach_every_state():
    """The streams above are not vacuous: a typical one spends time in every state."""
    scenario = Scenario("moment_fraction", {}, False, 0.01)
    harness = Harness(scenario)
    for op in random_ops(np.random.default_rng(0), 8000, 0.005, 0.005, _ends(scenario)):
        harness.apply(op)
    assert all(count > 50 for count in harness.counts.values()), harness.counts
    for kind in ("watchdog", "non-finite msk/joint_states", "backwards"):
        assert any(kind in reason for reason in harness.faults), (kind, set(harness.faults))


def test_fault_episodes_exercise_the_ramp():
    """The episodes are not vacuous: they fault often, and ramps meet limit changes (some
    refused), positions past the range ends and fast motion."""
    scenario = Scenario("moment_fraction", {"max_torque": 20.0, "max_torque_rate": 200.0}, False,
                        0.0)
    harness = Harness(scenario)
    for op in fault_episodes(np.random.default_rng(1), 30, 0.005, _ends(scenario)):
        harness.apply(op)
    assert len(harness.faults) >= 20 and harness.counts[State.FAULTED] > 300, harness.counts
    for event in ("limits refused while FAULTED", "limits accepted while FAULTED",
                  "FAULTED at an end pushing toward it", "FAULTED fast"):
        assert harness.events[event] >= 3, (event, harness.events)
    for kind in ("watchdog", "non-finite", "backwards"):
        assert any(kind in reason for reason in harness.faults), (kind, set(harness.faults))
