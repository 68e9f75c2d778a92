"""Assist laws, their settings, and the smoothing filter."""

import numpy as np
import pytest

from emg_msk_ros.control.laws import (ESTIMATE, MEASURED, MUSCLES, LawInputs, LowPass,
                                      make_law, muscle_groups)
from emg_msk_ros.control.limits import LimitError

JOINTS = ["knee", "ankle"]


def inputs(**overrides):
    values = dict(est_position=np.array([0.5, 0.1]), est_velocity=np.array([1.0, -0.5]),
                  est_torque=np.array([20.0, -8.0]))
    values.update(overrides)
    return LawInputs(**values)


def test_moment_fraction_scales_the_biological_moment_per_joint():
    law, muscles = make_law("moment_fraction", {"moment_gain": [0.5, 0.25]}, JOINTS)
    assert muscles == [] and law.inputs == {ESTIMATE}
    assert law(inputs()).tolist() == [10.0, -2.0]


def test_moment_gain_above_one_is_refused():
    with pytest.raises(LimitError, match=r"moment_gain\[0\] = 1.5"):
        make_law("moment_fraction", {"moment_gain": 1.5}, JOINTS)


def test_myoelectric_law_uses_group_means_and_joint_prefixes():
    law, muscles = make_law(
        "myoelectric", {"myoelectric_gain": [10.0, 4.0]}, JOINTS,
        flexor_entries=["knee:bf", "knee:st", "ankle:ta"],
        extensor_entries=["knee:rf", "ankle:gm"])
    assert muscles == ["bf", "st", "ta", "rf", "gm"] and law.inputs == {ESTIMATE, MUSCLES}
    activation = np.array([0.6, 0.2, 0.1, 0.3, 0.5])
    out = law(inputs(activation=activation))
    assert out == pytest.approx([10.0 * (0.4 - 0.3), 4.0 * (0.1 - 0.5)])
    assert law(inputs()) is None  # no activations yet


def test_unprefixed_muscle_belongs_to_every_joint():
    names, flexors, extensors = muscle_groups(JOINTS, ["a"], ["ankle:b"])
    assert names == ["a", "b"]
    assert [f.tolist() for f in flexors] == [[0], [0]]
    assert [e.tolist() for e in extensors] == [[], [1]]


@pytest.mark.parametrize("flex, ext, words", [
    (["hip:a"], [], ["unknown joint 'hip'"]),
    (["knee:a"], ["knee:a", "ankle:b"], ["'a' is both flexor and extensor", "'knee'"]),
    (["knee:a"], [], ["joint 'ankle' has no flexor or extensor"]),
    (["knee:"], ["ankle:b"], ["names no muscle"]),
])
def test_bad_muscle_groups_are_refused(flex, ext, words):
    with pytest.raises(LimitError) as info:
        muscle_groups(JOINTS, flex, ext)
    for word in words:
        assert word in str(info.value)


def test_impedance_pulls_the_measured_joint_toward_the_prediction():
    law, _ = make_law("impedance", {"stiffness": 100.0, "damping": 2.0}, JOINTS)
    assert law.inputs == {ESTIMATE, MEASURED}
    out = law(inputs(meas_position=np.array([0.4, 0.1]), meas_velocity=np.array([0.0, 0.0])))
    assert out == pytest.approx([100.0 * 0.1 + 2.0 * 1.0, 2.0 * -0.5])
    assert law(inputs()) is None  # nothing measured


def test_unknown_law_is_refused():
    with pytest.raises(LimitError, match="assist_law = 'pid'"):
        make_law("pid", {}, JOINTS)


def test_low_pass_converges_with_the_time_constant_and_passes_through_when_off():
    smooth = LowPass(0.1)
    assert smooth(np.array([0.0]), 0.01).tolist() == [0.0]
    for _ in range(10):  # 0.1 s = one time constant
        y = smooth(np.array([1.0]), 0.01)
    assert 0.55 < y[0] < 0.7  # backward Euler: 1 - (1/1.1)^10 ≈ 0.61
    for _ in range(200):
        y = smooth(np.array([1.0]), 0.01)
    assert y[0] == pytest.approx(1.0, abs=1e-6)
    off = LowPass(0.0)
    off(np.array([5.0]), 0.01)
    assert off(np.array([-3.0]), 0.01).tolist() == [-3.0]


def test_low_pass_does_not_overflow_on_huge_finite_inputs():
    smooth = LowPass(0.05)
    smooth(np.array([1e308]), 0.005)
    assert np.isfinite(smooth(np.array([-1e308]), 0.005)).all()
