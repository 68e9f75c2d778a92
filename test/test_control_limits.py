"""Limit settings: ranges, per-joint values, consistency, and which changes loosen them."""

import math

import numpy as np
import pytest

from emg_msk_ros.control.limits import (LIMIT_SPECS, LimitError, SafetyLimits, loosened,
                                        per_joint_values)


def test_defaults_are_valid_and_inside_their_ranges():
    limits = SafetyLimits.from_values({}, 2)
    for spec in LIMIT_SPECS:
        assert spec.low <= spec.default <= spec.high, spec.name
        value = np.atleast_1d(getattr(limits, spec.name))
        assert value.shape == ((2,) if spec.per_joint else (1,))
        assert np.all(value == spec.default)


def test_single_value_applies_to_every_joint_and_lists_are_per_joint():
    limits = SafetyLimits.from_values({"max_torque": 5.0, "max_velocity": [1.0, 2.0, 3.0]}, 3)
    assert limits.max_torque.tolist() == [5.0, 5.0, 5.0]
    assert limits.max_velocity.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("values, words", [
    ({"max_torque": 500.0}, ["max_torque[0]", "outside", "[0, 200]"]),
    ({"max_torque": [5.0, -1.0]}, ["max_torque[1]", "-1"]),
    ({"max_velocity": math.nan}, ["max_velocity[0]", "not a finite"]),
    ({"fault_ramp_time": 0.0}, ["fault_ramp_time", "outside"]),
    ({"max_torque": [1.0, 2.0, 3.0]}, ["max_torque", "3 values", "expected 1 or one per joint"]),
    ({"control_rate": [100.0, 200.0]}, ["control_rate", "single value"]),
    ({"max_torqe": 1.0}, ["unknown", "max_torqe"]),
    ({"position_min": 1.0, "position_max": 1.1}, ["position_max - position_min", "range_margin"]),
    ({"max_torque": 50.0, "max_torque_rate": 100.0, "fault_ramp_time": 0.25},
     ["fault_ramp_time", "200 N·m/s", "max_torque_rate"]),
])
def test_bad_values_are_refused_with_a_reason_naming_the_setting(values, words):
    with pytest.raises(LimitError) as info:
        SafetyLimits.from_values(values, 2)
    for word in words:
        assert word in str(info.value)


def test_stale_after_is_three_control_periods_or_the_watchdog_floor():
    assert SafetyLimits.from_values({"control_rate": 200.0}, 1).stale_after == 0.05
    slow = SafetyLimits.from_values({"control_rate": 20.0, "watchdog_timeout": 0.05}, 1)
    assert slow.stale_after == pytest.approx(0.15)


def test_as_values_round_trips():
    limits = SafetyLimits.from_values({"max_torque": [3.0, 4.0], "range_margin": 0.2}, 2)
    again = SafetyLimits.from_values(limits.as_values(), 2)
    assert not loosened(limits, again) and not loosened(again, limits)
    assert again.max_torque.tolist() == [3.0, 4.0]


def test_loosened_reports_relaxations_only():
    base = SafetyLimits.from_values({}, 2)
    tighter = SafetyLimits.from_values(
        {"max_torque": 5.0, "position_min": 0.0, "position_max": 1.5, "range_margin": 0.2,
         "max_velocity": 2.0, "fault_ramp_time": 0.1, "watchdog_timeout": 0.02}, 2)
    assert loosened(base, tighter) == []
    looser = SafetyLimits.from_values(
        {"max_torque": [10.0, 20.0], "position_min": -0.5, "range_margin": 0.05}, 2)
    changes = loosened(base, looser)
    assert any(c.startswith("max_torque[1] 10 -> 20") for c in changes)
    assert any(c.startswith("position_min[0]") for c in changes)
    assert any(c.startswith("range_margin[1]") for c in changes)
    assert not any(c.startswith("max_torque[0]") for c in changes)


def test_per_joint_values_rejects_wrong_length():
    spec = LIMIT_SPECS[0]
    with pytest.raises(LimitError, match="2 values"):
        per_joint_values(spec, [1.0, 2.0], 3)


def test_the_default_config_file_is_valid():
    import yaml

    from emg_msk_ros.control.laws import LAW_SPECS, make_law
    from emg_msk_ros.paths import config_path

    params = yaml.safe_load(config_path("assist_controller.yaml").read_text())
    params = params["assist_controller"]["ros__parameters"]
    joints = params["joints"]
    limit_names = {spec.name for spec in LIMIT_SPECS}
    limits = SafetyLimits.from_values({k: v for k, v in params.items() if k in limit_names},
                                      len(joints))
    assert limits.max_torque.tolist() == params["max_torque"]
    law_values = {spec.name: params[spec.name] for spec in LAW_SPECS}
    for law in ("moment_fraction", "myoelectric", "impedance"):
        make_law(law, law_values, joints, params["flexor_muscles"], params["extensor_muscles"])
