"""The real-data benchmark (benchmarks/real_knee.py) on the UCI files copied into test/data.

The plausibility test trains the PI-CNN exactly as the benchmark does (its protocol settings)
on the first two thirds of a real seated knee-extension recording (angle labels only) and checks
the forces it estimates on the last third: non-negative, below each muscle's maximum isometric
force, and their net moment holding the leg against gravity, more while the leg is held
extended than while it hangs flexed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emg_msk_ros.cli import main as cli_main
from emg_msk_ros.io.uci import load_uci_file
from emg_msk_ros.learning.dataset import session_baseline, split_by_time, window_ends
from emg_msk_ros.learning.metrics import score
from emg_msk_ros.learning.settings import TrainingSettings, window_length
from emg_msk_ros.signal.config import ConfigError

UCI_FOLDER = Path(__file__).resolve().parent / "data" / "uci_lower_limb"
PLAUSIBILITY_FILE = "N_TXT/1Nsen.txt.gz"  # the first seated file of the copied normal subjects


@pytest.fixture(scope="module")
def bench(load_benchmark):
    """benchmarks/real_knee.py as a module."""
    return load_benchmark("real_knee")


def test_split_keeps_train_and_test_windows_apart(bench):
    settings, conditioning = bench.protocol_settings()
    recording = load_uci_file(UCI_FOLDER / "N_TXT" / "3Nsen.txt.gz")
    window = window_length(settings.model)
    setup = bench.prepare_file(recording, bench.load_preset("knee"), conditioning, window)
    n = len(setup.trial)
    decimation = round(recording.sample_rate / conditioning.output_rate_hz)
    assert setup.cut == int(2 * n // 3)
    # training part: raw samples before the first test sample's block only
    assert setup.train.emg.shape[0] == setup.cut * decimation
    assert setup.train.angle.shape[0] == setup.cut * decimation
    # the networks' resting level comes from the training part alone
    np.testing.assert_array_equal(setup.trial.baseline,
                                  session_baseline(setup.trial.excitation[:setup.cut]))
    # the test part's estimates start once a whole window lies inside it
    assert setup.test_segment == [(setup.cut, n)]
    # the standing posture moves the gravity term, the seated one keeps the preset's
    assert setup.preset.joint.hang_angle == pytest.approx(1.6039)
    standing = bench.posture_preset(setup.preset, "pie")
    assert standing.joint.hang_angle == 0.0 and standing.muscles is setup.preset.muscles


def test_tiers_and_duplicates(bench):
    kept, dropped = bench.select_files(UCI_FOLDER)
    names = {bench.file_stem(r) for r in kept}
    assert "2Nsen" not in names and {"1Nsen", "3Nsen", "1Nmar", "1Apie"} <= names
    assert dropped == [{"file": "2Nsen.txt.gz", "reason": "duplicate recording of 1Nsen"}]
    tiers = {bench.file_stem(r): bench.tier_of(r.metadata) for r in kept}
    assert tiers["1Nsen"] == "sen" and tiers["1Nmar"] == "hard" and tiers["1Apie"] == "hard"


@pytest.mark.kernels
def test_pi_cnn_forces_on_real_data_are_plausible(bench):
    """Every verdict here holds with margin over training seeds and CPU kernels (seeds 0-2 on
    AVX-512 kernels, 0-1 on torch's default ones gave the numbers quoted).

    Not asserted: the benchmark's extensor ratio (quadriceps force with the knee extended over
    flexed, item 7). How the muscles split a moment between agonists and antagonists is not
    identifiable from angle labels, and that ratio was 0.97, 1.78 and 1.12 for seeds 0-2 on
    AVX-512 kernels and 1.16 for seed 0 on the default ones: a knife edge at 1. What the
    physics term does determine is the muscles' net moment, asserted instead.
    """
    settings, conditioning = bench.protocol_settings()
    recording = load_uci_file(UCI_FOLDER / PLAUSIBILITY_FILE)
    setup = bench.prepare_file(recording, bench.load_preset("knee"), conditioning,
                               window_length(settings.model))
    predictions, info = bench.cnn_method(setup, settings, conditioning, physics=True)
    # a few seconds of training windows still get min_epoch_batches optimiser steps per epoch
    assert info["steps"] >= settings.optim.min_epoch_batches * info["epochs"]
    check = bench.force_plausibility(predictions, setup)
    assert check["finite"]
    assert check["min_force_n"] >= 0.0
    for muscle, peak in check["peak_over_f0"].items():  # seen: 0.02-0.33
        assert 0.0 < peak < 1.0, f"{muscle}: peak force {peak:.2f} x F0"
    # The net muscle moment holds the shank against gravity, whose moment (12.9 N·m x
    # sin(hang angle - angle) in the knee preset) is near its maximum with the knee extended
    # and near zero with the shank hanging flexed: toward extension, and larger in the most
    # extended quarter of the test samples than in the most flexed one. Seen: 5.0-8.7 N·m
    # more, correlation with extension 0.91-0.99.
    angle = setup.trial.angle[predictions["index"]]
    extended, flexed = np.percentile(angle, [25.0, 75.0])
    extension_moment = -predictions["net_moment"]
    gain = extension_moment[angle <= extended].mean() - extension_moment[angle >= flexed].mean()
    assert gain > 2.0, f"net extension moment only {gain:.2f} N·m larger when extended"
    assert np.corrcoef(extension_moment, -angle)[0, 1] > 0.7
    # and the angle follows the measured one (not a flat line at a joint stop); seen r >= 0.98
    scored = score([(predictions, setup.trial)], setup.preset)
    assert scored["angle"]["r"] > 0.8
    assert np.isfinite(scored["physics_residual_rms"])


def test_short_training_parts_keep_a_validation_block_that_holds_windows(bench):
    settings, _ = bench.protocol_settings()
    window = window_length(settings.model)
    data = settings.data
    # 20.06 s of training part (4Asen): five 5 s blocks would leave a 0.06 s validation sliver
    for n in (2006, 2240, 2260, 5007, 1000):
        train, val = split_by_time(n, 0.01, data.val_fraction, data.val_block_s)
        assert train[0][0] == 0 and max(stop for _, stop in train + val) == n
        assert len(window_ends(val, window, stride=1)) > 0, n
        assert all(stop - start >= window for start, stop in train + val), n


def test_min_epoch_batches_is_checked():
    with pytest.raises(ConfigError, match=r"training\.optim\.min_epoch_batches"):
        TrainingSettings().replace("optim", min_epoch_batches=0)


def test_quick_run_writes_the_json_report(quick_bench):
    """``emg-msk bench real-knee --quick --json --data test/data/uci_lower_limb`` (the run of
    test_benchmarks_quick.py): every file of the folder, each header layout of the release
    among them, is read; the first file of each tier is scored."""
    run = quick_bench("real-knee")
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert report["quick"] is True and report["methods"] == ["pi_cnn", "cnn", "physics"]
    assert set(report["tiers"]) == {"sen", "pie", "hard"}
    assert report["tiers"]["pie"]["files"] == []  # no normal pie file among the test copies
    assert report["dropped"] == [{"file": "2Nsen.txt.gz",
                                  "reason": "duplicate recording of 1Nsen"}]
    assert {f["tier"] for f in report["files"]} == {"sen", "hard"}  # first file of each tier
    scored = [f for f in report["files"] if "excluded" not in f]
    assert all(isinstance(f["excluded"], str) and f["excluded"]
               for f in report["files"] if f not in scored)
    assert any(f["tier"] == "sen" for f in scored)
    for entry in scored:
        assert entry["train_s"] > entry["test_s"] > 0
        for method in ("pi_cnn", "cnn", "physics"):
            metrics = entry["methods"][method]
            assert {"rmse_deg", "r", "r2", "physics_residual_rms", "plausibility"} <= set(metrics)
            assert metrics["rmse_deg"] > 0
    sen = report["tiers"]["sen"]
    assert sen["methods"]["pi_cnn"]["files"] == 1
    assert set(sen["methods"]["pi_cnn"]["rmse_deg"]) == {"median", "min", "max"}
    assert set(report["targets"]) == {"pi_cnn_median_rmse_deg_le_8", "pi_cnn_median_r_ge_0.9",
                                      "pi_cnn_rmse_le_cnn"}
    plotted = {t for t, summary in report["tiers"].items() if summary["median_file"]}
    assert sorted(report["plots"]) == sorted(f"out/real_knee/real_knee_{t}.png"
                                             for t in plotted)  # the default --out
    assert all((run.cwd / p).stat().st_size > 0 for p in report["plots"])
    assert "targets (primary tier sen)" in run.stderr


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    code = cli_main(["bench", "real-knee", "--data", str(tmp_path / "nowhere"), "--quick"])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err
