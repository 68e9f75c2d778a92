"""The closed-loop demo (``emg-msk demo``) on a short task: besides the loop's report, it scores
the state-aided model in the loop and the EMG-only model watching beside it against the plant's
truth, and the EMG-only one stays observe-only (the controller acts on the state-aided one)."""

from __future__ import annotations

import json
import math

import numpy as np

from emg_msk_ros import cli
from emg_msk_ros.demo import EMG_ONLY_NAMESPACE
from emg_msk_ros.estimate_scores import recorded_estimates
from emg_msk_ros.io.bag_replay import read_topics

TASK = 2.0  # s per repeat: unassisted, assisted; then 4 s with the e-stop


def test_the_demo_scores_both_models_against_the_truth_and_the_loop_uses_the_state_aided(
        tmp_path, capsys):
    out = tmp_path / "demo"
    # 0 or 1: the safety verdict is the loop's own business (test_sim_exo_graph and the bench)
    assert cli.main(["demo", "--out", str(out), "--duration", str(TASK), "--seed", "3"]) in (0, 1)
    printed = capsys.readouterr().out
    assert "state-aided knee-state" in printed and "EMG-only knee" in printed
    assert "angle 100 ms ahead RMSE deg" in printed
    report = json.loads((out / "report.json").read_text())
    estimate = report["estimate"]
    assert estimate["models"]["state_aided"].endswith("knee-state")
    assert estimate["models"]["emg_only"].endswith("knee")
    assert estimate["horizon_ms"] == 100.0
    assert list(estimate["windows_s"]) == ["unassisted", "assisted"]
    for model in ("state_aided", "emg_only"):
        scores = estimate[model]
        counts = {name: scores[name]["samples"] for name in ("unassisted", "assisted", "all")}
        # 100 estimates a second, none before the first full 0.7 s window
        assert 0 < counts["unassisted"] <= (TASK - 0.69) * 100 + 1
        assert 0 < counts["assisted"] <= TASK * 100 + 1
        assert counts["all"] == counts["unassisted"] + counts["assisted"]
        for name in ("unassisted", "assisted", "all"):
            values = [scores[name][key] for key in ("angle_rmse_deg", "force_nrmse",
                                                     "net_moment_nrmse")]
            assert all(math.isfinite(v) and v > 0 for v in values)
    ahead = estimate["state_aided"]["all"]
    assert math.isfinite(ahead["angle_ahead_rmse_deg"]) and ahead["angle_ahead_rmse_deg"] > 0
    assert math.isfinite(ahead["constant_velocity_rmse_deg"])
    assert (out / "estimate.png").stat().st_size > 10_000
    assert str(out / "estimate.png") in report["plots"]

    # observe-only: every controller state carries the state-aided model's net moment for its
    # stamp, not the EMG-only one's (both estimate at the same stamps)
    record = out / "record"
    loop_model = recorded_estimates(record)
    watcher = recorded_estimates(record, EMG_ONLY_NAMESPACE)
    assert len(watcher["stamp_ns"]) > 0
    states = [(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, m.human_torque[0])
              for _, m in read_topics(record, ["/assist/state"])["/assist/state"]]
    by_stamp = dict(zip(loop_model["stamp_ns"].tolist(), loop_model["net_moment"]))
    watched = dict(zip(watcher["stamp_ns"].tolist(), watcher["net_moment"]))
    acted = [(by_stamp[s], watched.get(s, np.nan), torque) for s, torque in states
             if s in by_stamp]
    assert len(acted) > 100
    loop_moment, watcher_moment, human = np.array(acted).T
    np.testing.assert_array_equal(human, loop_moment)
    assert np.mean(np.abs(human - watcher_moment) > 0.01) > 0.5
