"""The safety layer and the controller step, example by example.

The same rules as properties over random sequences: test_control_properties.py.
"""

import math

import numpy as np
import pytest

from emg_msk_ros.control.controller import AssistController
from emg_msk_ros.control.laws import make_law
from emg_msk_ros.control.limits import SafetyLimits
from emg_msk_ros.control.safety import (State, clamp, range_gate, slew_limit, velocity_gate)

DT = 0.005  # s, the default control period (200 Hz)


def test_clamp_and_slew_limit():
    u, flags = clamp(np.array([15.0, -3.0, -20.0]), np.array([10.0, 10.0, 10.0]))
    assert u.tolist() == [10.0, -3.0, -10.0] and flags.tolist() == [True, False, True]
    u, flags = slew_limit(np.array([5.0, 0.1]), np.array([0.0, 0.0]), np.array([100.0, 100.0]),
                          0.01)
    assert u.tolist() == [1.0, 0.1] and flags.tolist() == [True, False]
    assert slew_limit(np.array([5.0]), np.array([2.0]), np.array([100.0]), 0.0)[0] == [2.0]


def test_range_gate_allows_only_torque_away_from_a_near_limit():
    low, high, margin = np.full(4, 0.0), np.full(4, 2.0), np.full(4, 0.1)
    position = np.array([1.95, 1.95, 0.05, 1.0])  # near high, near high, near low, middle
    u, flags = range_gate(np.array([3.0, -3.0, -3.0, 3.0]), position, low, high, margin)
    assert u.tolist() == [0.0, -3.0, 0.0, 3.0]
    assert flags.tolist() == [True, False, True, False]
    beyond = range_gate(np.array([3.0, -3.0]), np.array([2.5, -1.0]), low[:2], high[:2],
                        margin[:2])[0]
    assert beyond.tolist() == [0.0, 0.0]


def test_velocity_gate_keeps_braking_torque_only():
    vmax = np.full(4, 2.0)
    u, flags = velocity_gate(np.array([3.0, -3.0, 3.0, 3.0]), np.array([3.0, 3.0, -3.0, 1.0]),
                             vmax)
    assert u.tolist() == [0.0, -3.0, 3.0, 3.0]
    assert flags.tolist() == [True, False, False, False]
    # no overflow warning on huge velocities
    with np.errstate(all="raise"):
        velocity_gate(np.array([1e300]), np.array([1e300]), np.array([2.0]))


class Rig:
    """A controller driven on a simulated clock with a steady estimate stream."""

    def __init__(self, law="moment_fraction", limits=None, **kwargs):
        self.limits = SafetyLimits.from_values(limits or {}, 1)
        law_obj, muscles = make_law(law, {"moment_gain": 1.0}, ["knee"],
                                    kwargs.pop("flexors", ()), kwargs.pop("extensors", ()))
        self.c = AssistController(["knee"], law_obj, self.limits, muscles, **kwargs)
        self.t = 0.0

    def start(self, **inputs):
        """Feed 20 ms of inputs, then ask to enable; returns (accepted, reason)."""
        self.run(0.02, **inputs)
        return self.c.request_enable(self.t)

    def run(self, seconds, torque=8.0, position=1.0, velocity=0.0, feed=True, measured=None):
        outs = []
        for _ in range(round(seconds / DT)):
            self.t += DT
            if feed:
                self.c.update_estimate(self.t, self.t, [position], [velocity], [torque])
            if measured is not None:
                self.c.update_measured(self.t, self.t, [measured[0]], [measured[1]])
            outs.append(self.c.step(self.t))
        return outs


def assisting(**kwargs) -> Rig:
    """A rig enabled with fresh inputs and assisting at the full 8 N·m."""
    rig = Rig(**kwargs)
    ok, reason = rig.start()
    assert ok, reason
    assert rig.run(0.2)[-1].command[0] == 8.0
    return rig


def test_starts_disabled_and_commands_zero():
    rig = Rig()
    outs = rig.run(0.1)
    assert all(o.safety.state is State.DISABLED and o.command[0] == 0.0 for o in outs)
    assert outs[-1].desired_torque[0] == 8.0  # the law runs, the output is held at zero


def test_enable_is_refused_until_inputs_are_fresh_then_ramps_up_from_zero():
    rig = Rig()
    ok, reason = rig.c.request_enable(0.0)
    assert not ok and "no msk/joint_states received yet" in reason
    rig.run(0.02)
    rig.run(0.2, feed=False)
    ok, reason = rig.c.request_enable(rig.t)
    assert not ok and "msk/joint_states is" in reason and "limit 50.0 ms" in reason
    ok, reason = rig.start()
    assert ok, reason
    outs = rig.run(0.2)
    rate = rig.limits.max_torque_rate[0]
    assert outs[0].command[0] == pytest.approx(rate * DT)
    assert outs[0].safety.rate_limited[0]
    assert outs[-1].command[0] == 8.0 and not outs[-1].safety.rate_limited[0]


def test_saturation_is_flagged_and_bounded():
    rig = Rig()
    assert rig.start(torque=50.0)[0]
    out = rig.run(0.5, torque=50.0)[-1]
    assert out.command[0] == 10.0 and out.safety.saturated[0]


def test_watchdog_trip_ramps_to_zero_within_the_ramp_time_and_latches():
    rig = assisting()
    outs = rig.run(0.6, feed=False)
    faulted = [i for i, o in enumerate(outs) if o.safety.state is State.FAULTED]
    first = faulted[0]
    assert "watchdog: msk/joint_states" in outs[first].safety.fault_reason
    # stale after 50 ms: the fault is seen on the first step past it
    assert first * DT <= 0.05 + DT
    ramp = [o.command[0] for o in outs[first:]]
    assert ramp[0] == 8.0
    assert all(b <= a for a, b in zip(ramp, ramp[1:]))
    steps_to_zero = ramp.index(0.0)
    assert steps_to_zero * DT <= rig.limits.fault_ramp_time + 1e-9
    # inputs come back: still latched, enable refused with the reason
    rig.run(0.05)
    ok, reason = rig.c.request_enable(rig.t)
    assert not ok and "fault latched" in reason and "watchdog" in reason
    assert rig.c.reset_fault(rig.t)[0]
    assert rig.c.request_enable(rig.t)[0]


def test_reset_is_refused_while_the_fault_ramp_is_running():
    rig = assisting()
    rig.run(0.07, feed=False)
    ok, reason = rig.c.reset_fault(rig.t)
    assert not ok and "still ramping" in reason


def test_estop_zeroes_on_the_next_step_overriding_the_slew_limit_and_latches():
    rig = assisting()
    rig.c.set_estop(True, rig.t)
    out = rig.run(DT)[0]
    assert out.safety.state is State.ESTOP and out.command[0] == 0.0
    rig.c.set_estop(False, rig.t)  # releasing does not unlatch
    assert rig.run(0.05)[-1].safety.state is State.ESTOP
    assert not rig.c.request_enable(rig.t)[0]
    rig.c.set_estop(True, rig.t)
    ok, reason = rig.c.reset_fault(rig.t)
    assert not ok and "still engaged" in reason
    rig.c.set_estop(False, rig.t)
    assert rig.c.reset_fault(rig.t)[0]
    assert rig.run(DT)[0].safety.state is State.DISABLED


def test_disable_zeroes_at_once():
    rig = assisting()
    assert rig.c.disable(rig.t) == (True, "disabled")
    assert rig.run(DT)[0].command[0] == 0.0


@pytest.mark.parametrize("field", ["position", "velocity", "torque", "stamp"])
def test_non_finite_input_latches_a_fault_naming_it(field):
    rig = assisting()
    values = dict(position=[1.0], velocity=[0.0], torque=[8.0])
    stamp = math.nan if field == "stamp" else rig.t + DT
    if field != "stamp":
        values[field] = [math.inf]
    reason = rig.c.update_estimate(rig.t + DT, stamp, **values)
    assert f"non-finite msk/joint_states {field}" in reason
    out = rig.run(DT, feed=False)[0]
    assert out.safety.state is State.FAULTED and field in out.safety.fault_reason
    assert np.isfinite(out.command).all() and 0 < out.command[0] <= 8.0


def test_clock_going_backwards_latches_a_fault_and_zeroes_at_once():
    """A clock that steps back cannot time a ramp (the ramp would freeze at the torque of the
    fault for as long as the step): zero now, and stay zero while the old time is refused."""
    rig = assisting()
    rig.t -= 1.0  # the control loop goes on 1 s in the past
    outs = rig.run(0.5)
    assert outs[0].safety.state is State.FAULTED and "backwards" in outs[0].safety.fault_reason
    assert all(o.command[0] == 0.0 for o in outs)
    assert rig.c.reset_fault(rig.t)[0] is False  # a reset at a refused time cannot clear it
    assert rig.c.reset_fault(rig.t + 1.0)[0] is True  # nothing left to ramp
    for now in (math.nan, math.inf):
        rig = assisting()
        out = rig.c.step(now)
        assert "non-finite time" in out.safety.fault_reason and out.command[0] == 0.0


def test_stamps_that_do_not_increase_are_ignored_and_do_not_feed_the_watchdog():
    rig = Rig()
    rig.run(0.02)
    reason = rig.c.update_estimate(rig.t + DT, rig.t - 1.0, [1.0], [0.0], [8.0])
    assert "not newer" in reason
    rig.t += 0.1
    for k in range(5):  # replayed old stamps keep arriving: still stale
        rig.c.update_estimate(rig.t + k * DT, 0.001 * k, [1.0], [0.0], [8.0])
    ok, reason = rig.c.request_enable(rig.t + 5 * DT)
    assert not ok and "ms old" in reason


def test_wrongly_sized_input_is_ignored_with_a_reason():
    rig = Rig()
    reason = rig.c.update_estimate(0.001, 0.001, [1.0, 2.0], [0.0], [8.0])
    assert reason == "msk/joint_states ignored: position has 2 values, expected 1"


def test_gates_use_the_measured_state_when_fresh_else_the_estimate():
    rig = Rig(limits={"position_max": 1.5, "range_margin": 0.1})
    rig.run(0.02, position=1.0, measured=(1.45, 0.0))
    rig.c.request_enable(rig.t)
    out = rig.run(0.1, position=1.0, measured=(1.45, 0.0))[-1]
    assert out.command[0] == 0.0 and out.safety.range_limited[0]
    # measured armed at enable: its silence is a fault
    out = rig.run(0.1, position=1.0)[-1]
    assert out.safety.state is State.FAULTED and "joint_states" in out.safety.fault_reason
    # without a measured stream the estimate gates
    rig = Rig(limits={"position_max": 1.5, "range_margin": 0.1})
    ok, reason = rig.start(position=1.45)
    assert ok and "not present: joint_states" in reason
    out = rig.run(0.1, position=1.45)[-1]
    assert out.command[0] == 0.0 and out.safety.range_limited[0]


def test_velocity_gate_acts_on_fast_motion():
    rig = Rig()
    assert rig.start(velocity=5.0)[0]
    out = rig.run(0.1, velocity=5.0)[-1]
    assert out.command[0] == 0.0 and out.safety.velocity_limited[0]
    out = rig.run(0.1, velocity=-5.0)[-1]  # torque now brakes the motion: allowed
    assert out.command[0] == 8.0


def test_required_measured_state_blocks_enable_until_it_arrives():
    rig = Rig(require_measured=True)
    ok, reason = rig.start()
    assert not ok and "no joint_states received yet" in reason
    rig.run(0.02, measured=(1.0, 0.0))
    assert rig.c.request_enable(rig.t)[0]


def test_myoelectric_law_needs_fresh_muscle_states():
    rig = Rig("myoelectric", flexors=["bf"], extensors=["rf"])
    ok, reason = rig.start()
    assert not ok and "no msk/muscle_states received yet" in reason
    assert rig.c.update_muscles(rig.t, rig.t, [0.8, 0.3]) is None
    assert rig.c.request_enable(rig.t)[0]
    out = rig.c.step(rig.t + DT)
    assert out.desired_torque[0] == pytest.approx(10.0 * 0.5)


def test_law_overflow_faults_instead_of_commanding_inf():
    rig = Rig("impedance", limits={}, smoothing_time_constant=0.0)
    rig.run(0.02, position=1.0, measured=(1.0, 0.0))
    rig.c.request_enable(rig.t)
    rig.t += DT
    rig.c.update_estimate(rig.t, rig.t, [1e308], [0.0], [0.0])
    rig.c.update_measured(rig.t, rig.t, [-1e308], [0.0])
    out = rig.c.step(rig.t)
    assert out.safety.state is State.FAULTED and "non-finite torque" in out.safety.fault_reason
    assert np.isfinite(out.command).all()


def test_limits_cannot_be_relaxed_while_enabled_but_can_be_tightened():
    rig = assisting()
    looser = SafetyLimits.from_values({"max_torque": 20.0}, 1)
    reason = rig.c.set_limits(looser)
    assert "cannot relax limits while enabled" in reason and "max_torque[0] 10 -> 20" in reason
    assert rig.c.set_limits(SafetyLimits.from_values({"max_torque": 5.0}, 1)) is None
    out = rig.run(DT)[0]
    assert out.command[0] == 5.0 and out.safety.saturated[0]
    rig.c.disable(rig.t)
    assert rig.c.set_limits(looser) is None


def test_changing_limits_during_a_fault_neither_restarts_nor_stretches_the_ramp():
    """Tighter limits are accepted during a ramp and leave its length alone; looser ones (a
    longer ramp, a faster slew) are refused until the fault is reset."""
    for change, accepted in (({}, True), ({"fault_ramp_time": 0.1, "max_torque_rate": 100.0}, True),
                             ({"fault_ramp_time": 2.0, "max_torque_rate": 1000.0}, False)):
        rig = assisting()
        rig.c.fault("test")
        zero_at = None
        for k in range(200):
            if k % 10 == 0:  # a limit change every 50 ms
                reason = rig.c.set_limits(SafetyLimits.from_values(change, 1))
                assert (reason is None) == accepted, (change, reason)
            out = rig.run(DT)[0]
            if zero_at is None and out.command[0] == 0.0:
                zero_at = (k + 1) * DT
        assert rig.limits.fault_ramp_time - 2 * DT < zero_at <= rig.limits.fault_ramp_time + 1e-9
        if not accepted:
            assert "while faulted" in reason and "fault_ramp_time 0.25 -> 2" in reason
    rig = assisting()
    rig.c.fault("test")
    rig.run(0.05)
    rig.c.set_limits(SafetyLimits.from_values({"max_torque": 2.0}, 1))
    assert abs(rig.run(DT)[0].command[0]) <= 2.0  # a lower limit clamps the ramp at once


def test_torque_toward_a_range_end_is_cut_at_the_end_whatever_the_slew_limit():
    """Within range_margin the push decays at the slew rate; at the end itself it stops at
    once, even with range_margin 0."""
    for margin in (0.1, 0.0):
        rig = assisting(limits={"range_margin": margin, "max_torque_rate": 50.0})
        high = rig.limits.position_max[0]
        for position in np.arange(high - 0.15, high + 0.1, 0.01):
            out = rig.run(DT, position=position)[0]
            if position >= high:
                assert out.command[0] <= 0.0 and out.safety.range_limited[0], (margin, position)
        away = rig.run(0.5, position=high + 0.05, torque=-8.0)[-1]
        assert away.command[0] == -8.0  # torque away from the end is still allowed


def test_law_inputs_cannot_change_while_enabled_but_gains_can():
    rig = Rig()
    assert rig.start()[0]
    law, _ = make_law("impedance", {}, ["knee"])
    assert "while enabled" in rig.c.set_law(law)
    half, _ = make_law("moment_fraction", {"moment_gain": 0.5}, ["knee"])
    assert rig.c.set_law(half) is None
    assert rig.run(0.2)[-1].command[0] == 4.0
    rig.c.disable(rig.t)
    assert rig.c.set_law(law) is None
    ok, reason = rig.c.request_enable(rig.t)
    assert not ok and "no joint_states received yet" in reason


def test_immediate_fault_zeroes_at_once_and_does_not_ramp_back_up():
    rig = assisting()
    rig.c.fault("exception in the control loop", immediate=True)
    outs = rig.run(0.1)
    assert all(o.command[0] == 0.0 and o.safety.state is State.FAULTED for o in outs)
    assert outs[0].safety.fault_reason == "exception in the control loop"


def test_smoothing_follows_elapsed_time_not_the_number_of_steps():
    """The node steps on every new estimate as well as on its tick: extra steps must not speed
    the low-pass up. Stepping every 1 ms for 5 ms lands near one 5 ms step, and a step 1 ms
    after the previous one moves 1/(τ + 1 ms) of the gap, not 5/(τ + 5 ms)."""
    tau, torque = 0.1, 8.0
    fine, coarse = Rig(smoothing_time_constant=tau), Rig(smoothing_time_constant=tau)
    for rig in (fine, coarse):
        rig.c.update_estimate(0.0, 0.0, [1.0], [0.0], [0.0])
        assert rig.c.step(0.0).desired_torque[0] == 0.0  # the first output sets the state
        assert rig.c.update_estimate(0.0005, 0.0005, [1.0], [0.0], [torque]) is None
    first = fine.c.step(0.001).desired_torque[0]
    assert first == pytest.approx(torque * 0.001 / (tau + 0.001))
    for k in range(2, 6):
        last = fine.c.step(0.001 * k).desired_torque[0]
    one_step = coarse.c.step(0.005).desired_torque[0]
    assert one_step == pytest.approx(torque * 0.005 / (tau + 0.005))
    assert last == pytest.approx(one_step, rel=0.05)


# -- issue 21: the fault ramp must never raise the torque nor push past a range end ----------

def _issue21_controller(measured: bool) -> AssistController:
    """The issue's set-up: one joint, moment_fraction gain 0.3, no smoothing, default limits;
    30 estimates of 30 N·m at 200 Hz (enabled at the first) bring the command to 9 N·m, then
    the estimates stop."""
    law, muscles = make_law("moment_fraction", {"moment_gain": 0.3}, ["knee"])
    c = AssistController(["knee"], law, SafetyLimits.from_values({}, 1), muscles)
    for i in range(30):
        t = 0.005 * i
        if measured:
            c.update_measured(t, t, [1.0], [0.0])
        c.update_estimate(t, t, [1.0], [0.0], [30.0])
        if i == 0:
            assert c.request_enable(0.0)[0]
        c.step(t)
    assert c.step(0.15).command[0] == pytest.approx(9.0)
    return c


def test_issue21_a_raising_max_torque_during_a_fault_ramp_does_not_raise_the_torque():
    c = _issue21_controller(measured=False)
    t, ramp = 0.15, []
    while c.safety.state is not State.FAULTED:
        t += 0.005
        ramp.append(c.step(t).command[0])
    fault_time, at_fault = t, ramp[-1]
    t += 0.005
    assert c.step(t).command[0] < at_fault  # the ramp runs
    lowered = SafetyLimits.from_values({"max_torque": 1.0}, 1)
    assert c.set_limits(lowered) is None  # tightening is always allowed
    t += 0.005
    assert c.step(t).command[0] == 1.0
    for raised in ({"max_torque": 10.0}, {"max_torque": 0.0}):
        before = c.safety.limits
        reason = c.set_limits(SafetyLimits.from_values(raised, 1))
        if raised["max_torque"] > before.max_torque[0]:
            assert reason is not None and "max_torque[0]" in reason and "faulted" in reason
        t += 0.005
        command = c.step(t).command[0]
        # never above the ramp from the fault, nor the limit in force, nor the last command
        ramp_value = at_fault * max(0.0, 1 - (t - fault_time) / c.safety.limits.fault_ramp_time)
        assert command <= min(ramp_value, c.safety.limits.max_torque[0], 1.0) + 1e-12
    assert c.safety.limits.max_torque[0] == 0.0
    assert c.step(t + 0.005).command[0] == 0.0  # after max_torque 0 it stays 0
    assert c.set_limits(SafetyLimits.from_values({"max_torque": 10.0}, 1)) is not None
    assert c.step(t + 0.01).command[0] == 0.0


def test_issue21_b_a_fault_ramp_stops_pushing_past_a_range_end():
    c = _issue21_controller(measured=True)
    t = 0.145
    for _ in range(11):
        t += 0.005
        c.update_measured(t, t, [1.0], [0.0])
        c.step(t)
    assert c.safety.state is State.FAULTED and c.safety.command[0] > 8.0
    t = 0.205
    c.update_measured(t, t, [1.95], [0.0])  # past position_max = 1.9
    out = c.step(t)
    assert out.command[0] == 0.0 and out.safety.range_limited[0]
    # the ramp does not come back when the joint returns into the range
    c.update_measured(t + 0.005, t + 0.005, [1.0], [0.0])
    assert c.step(t + 0.005).command[0] == 0.0


def test_issue21_c_reset_with_a_clock_going_backwards_keeps_the_fault_latched():
    rig = assisting()
    rig.c.fault("test", immediate=True)
    rig.run(0.05)
    ok, reason = rig.c.reset_fault(rig.t - 0.01)
    assert not ok and "clock went backwards" in reason
    assert rig.c.safety.state is State.FAULTED
    # from DISABLED too: the anomaly itself latches a fault that the same call cannot clear
    rig = Rig()
    rig.run(0.05)
    ok, reason = rig.c.reset_fault(rig.t - 0.01)
    assert not ok and rig.c.safety.state is State.FAULTED
    assert "clock went backwards" in rig.c.safety.fault_reason
    assert rig.c.reset_fault(rig.t)[0]  # a sane clock clears it
