"""Scoring recorded estimates against a simulation's truth (:mod:`emg_msk_ros.estimate_scores`)
on synthetic series whose right answers are known: truth looked up by stamp (not arrival
order), a prediction compared with the truth one horizon after its stamp, constant-velocity
extrapolation from the held joint-state reading, every model on the same samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emg_msk_ros.estimate_scores import Truth, score_models

pytestmark = pytest.mark.kernels  # numpy's interpolation and sums, compared with tolerances

START = 10**18  # ns: stamp of EMG sample 0
DT = 0.002  # s, the plant's step
RATE = 100.0  # Hz, estimates
HORIZON = 0.1  # s
MUSCLES = ("flexor", "extensor")
WINDOWS = {"first": (0.0, 4.0), "second": (4.0, 8.0)}


def make_truth() -> Truth:
    t = np.arange(0.0, 10.0 + DT / 2, DT)
    angle = 0.6 * np.sin(2 * np.pi * 0.4 * t) + 0.2 * np.sin(2 * np.pi * 1.3 * t)
    force = np.stack([300 + 200 * np.sin(2 * np.pi * 0.7 * t),
                      500 + 100 * np.cos(2 * np.pi * 0.3 * t)], axis=1)
    return Truth(t, angle, force, 0.04 * force[:, 0] - 0.03 * force[:, 1], MUSCLES)


def stamps_from(first_s: float, last_s: float = 9.5) -> np.ndarray:
    k = np.arange(round(first_s * RATE), round(last_s * RATE) + 1)
    return START + np.round(k * 1e9 / RATE).astype(np.int64)


def estimates(truth: Truth, stamps: np.ndarray, shift_s: float = 0.0, names=MUSCLES) -> dict:
    """Estimates equal to the truth ``shift_s`` after each stamp, muscles in ``names`` order."""
    true = truth.at((stamps - START) * 1e-9 + shift_s)
    order = [MUSCLES.index(name) for name in names]
    return {"stamp_ns": stamps, "angle": true["angle"], "velocity": np.zeros(len(stamps)),
            "net_moment": true["net_moment"], "force": true["force"][:, order]}


def readings(truth: Truth) -> dict:
    """An encoder at 200 Hz reading the truth exactly (velocity by its derivative), its
    readings 1.3 ms off the estimates' stamps."""
    t = np.arange(0.0013, 9.9, 0.005)
    velocity = np.gradient(truth.angle, DT)
    return {"stamp_ns": START + np.round(t * 1e9).astype(np.int64),
            "angle": np.interp(t, truth.time, truth.angle),
            "velocity": np.interp(t, truth.time, velocity)}


def score(truth, emg_only, state_aided, prediction, horizon=HORIZON, start=START):
    return score_models(truth, start, WINDOWS, list(MUSCLES), emg_only=emg_only,
                        state_aided=state_aided, prediction=prediction,
                        readings=readings(truth), horizon_s=horizon)


def permuted(series: dict, seed: int) -> dict:
    order = np.random.default_rng(seed).permutation(len(series["stamp_ns"]))
    return {key: value[order] for key, value in series.items()}


def test_a_prediction_scores_zero_only_against_the_truth_one_horizon_after_its_stamp():
    truth = make_truth()
    stamps = stamps_from(0.7)
    now = estimates(truth, stamps)
    ahead = estimates(truth, stamps, HORIZON)
    right = score(truth, now, now, ahead)["state_aided"]["all"]
    assert right["angle_ahead_rmse_deg"] < 1e-9
    assert right["angle_rmse_deg"] < 1e-9 and right["force_nrmse"] < 1e-12
    assert right["net_moment_nrmse"] < 1e-12
    # the same prediction scored as if it were for its own stamp, or with the truth's clock
    # off by the horizon, is wrong by about what the joint moves in 100 ms
    unshifted = score(truth, now, now, ahead, horizon=0.0)["state_aided"]["all"]
    late_clock = score(truth, now, now, ahead, start=START + 10**8)["state_aided"]["all"]
    stale = score(truth, now, now, estimates(truth, stamps))["state_aided"]["all"]
    for wrong in (unshifted, late_clock, stale):
        assert wrong["angle_ahead_rmse_deg"] > 3.0


def test_truth_is_looked_up_by_stamp_not_by_arrival_order():
    truth = make_truth()
    stamps = stamps_from(0.7)
    now, ahead = estimates(truth, stamps), estimates(truth, stamps, HORIZON)
    reordered = score(truth, permuted(now, 1), permuted(now, 2), permuted(ahead, 3))
    assert reordered["state_aided"]["all"]["angle_ahead_rmse_deg"] < 1e-9
    assert reordered["emg_only"]["all"]["angle_rmse_deg"] < 1e-9
    assert reordered["emg_only"]["all"]["net_moment_nrmse"] < 1e-12


def test_constant_velocity_extrapolates_the_reading_held_at_each_stamp():
    truth = make_truth()
    stamps = stamps_from(0.7)
    now = estimates(truth, stamps)
    result = score(truth, now, now, estimates(truth, stamps, HORIZON))
    # independently: the newest 200 Hz reading at or before each scored stamp, + v * horizon
    enc = readings(truth)
    for name, (begin, end) in {**WINDOWS, "all": (0.0, 8.0)}.items():
        t = (stamps - START) * 1e-9
        t = t[(t >= begin) & (t < end)]
        errors = []
        for when in t:
            k = np.flatnonzero(enc["stamp_ns"] <= START + round(when * 1e9))[-1]
            guess = enc["angle"][k] + enc["velocity"][k] * HORIZON
            errors.append(guess - np.interp(when + HORIZON, truth.time, truth.angle))
        expected = math.degrees(math.sqrt(np.mean(np.square(errors))))
        assert result["state_aided"][name]["constant_velocity_rmse_deg"] == pytest.approx(
            expected, rel=1e-9)
        assert expected > 1.0  # the test means something: the joint accelerates


def test_force_and_moment_nrmse_are_by_the_truths_range_with_muscles_matched_by_name():
    truth = make_truth()
    stamps = stamps_from(0.7)
    now = estimates(truth, stamps, names=MUSCLES[::-1])  # the model lists them the other way
    now["force"] = now["force"] + np.array([0.0, 40.0])  # flexor (second column) off by 40 N
    now["net_moment"] = now["net_moment"] - 2.0
    result = score_models(truth, START, WINDOWS, list(MUSCLES[::-1]), emg_only=now)
    assert result["state_aided"] is None
    for name, (begin, end) in WINDOWS.items():
        t = (stamps - START) * 1e-9
        t = t[(t >= begin) & (t < end)]
        true = truth.at(t)
        scored = result["emg_only"][name]
        flexor = 40.0 / np.ptp(true["force"][:, 0])
        assert scored["force_nrmse_per_muscle"] == pytest.approx(
            {"extensor": 0.0, "flexor": flexor}, abs=1e-12)
        assert scored["force_nrmse"] == pytest.approx(flexor / 2)
        assert scored["net_moment_nrmse"] == pytest.approx(2.0 / np.ptp(true["net_moment"]))
        assert scored["angle_rmse_deg"] < 1e-9


def test_every_model_is_scored_on_the_stamps_all_of_them_estimated_inside_the_windows():
    truth = make_truth()
    emg_only = estimates(truth, stamps_from(0.7))
    state = estimates(truth, stamps_from(1.2))  # a longer warm-up
    missing = np.ones(len(state["stamp_ns"]), dtype=bool)
    missing[500:510] = False  # ten estimates it never published (e.g. a stale joint state)
    state = {key: value[missing] for key, value in state.items()}
    ahead = estimates(truth, state["stamp_ns"], HORIZON)
    result = score(truth, emg_only, state, ahead)
    # first window: 1.20 .. 3.99 s; second: 4.00 .. 7.99 s less the ten (stamps 6.20 .. 6.29 s)
    expected = {"first": 280, "second": 390, "all": 670}
    for model in ("emg_only", "state_aided"):
        assert {name: result[model][name]["samples"] for name in expected} == expected


def test_too_few_samples_in_a_window_is_an_error():
    truth = make_truth()
    now = estimates(truth, stamps_from(3.98, 9.0))
    with pytest.raises(ValueError, match="2 estimates in first"):
        score_models(truth, START, WINDOWS, list(MUSCLES), emg_only=now)


def test_times_outside_the_simulation_are_refused():
    with pytest.raises(ValueError, match="outside the simulated"):
        make_truth().at(np.array([9.0, 10.5]))
