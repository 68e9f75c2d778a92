"""The learning benchmark's bookkeeping (benchmarks/learning.py): rows from several training runs
of each network, the targets judged on their means, and the table. The benchmark itself trains
for minutes, so it is run by hand (``emg-msk bench learning``), not here."""

from __future__ import annotations

import json
import math

import pytest

from emg_msk_ros.learning.evaluate import jsonable


@pytest.fixture(scope="module")
def bench(load_benchmark):
    """benchmarks/learning.py as a module."""
    return load_benchmark("learning")


def metrics(rmse_deg: float, r2: float = 0.9, residual: float = 1.0) -> dict:
    """The parts of a :func:`emg_msk_ros.learning.metrics.score` result a row uses."""
    return {"angle": {"rmse_deg": rmse_deg, "r2": r2}, "force_nrmse_mean": 0.05,
            "moment": {"nrmse": 0.08}, "physics_residual_rms": residual}


def test_row_holds_the_mean_and_spread_of_the_runs(bench):
    row = bench.summary_row("plenty", "PI-CNN", [metrics(8.0, 0.8, 2.0), metrics(10.0, 0.7, 4.0)],
                            (0.2, 0.3), 70.0)
    assert row["angle_rmse_deg"] == pytest.approx(9.0)
    assert row["angle_rmse_sd_deg"] == pytest.approx(math.sqrt(2.0))  # sample sd of 8 and 10
    assert row["angle_rmse_by_run"] == [8.0, 10.0]
    assert row["angle_r2"] == pytest.approx(0.75)
    assert row["physics_residual_nm"] == pytest.approx(3.0)
    assert (row["infer_p50_ms"], row["infer_p99_ms"], row["train_s"]) == (0.2, 0.3, 70.0)
    single = bench.summary_row("plenty", "physics", [metrics(13.0)], (0.05, 0.08), 12.0)
    assert single["angle_rmse_deg"] == 13.0 and math.isnan(single["angle_rmse_sd_deg"])
    written = json.loads(json.dumps(jsonable(single), allow_nan=False))  # what --json prints
    assert written["angle_rmse_sd_deg"] is None and written["angle_rmse_by_run"] == [13.0]


def rows_for(bench, pi_little: list[float], cnn_little: list[float]) -> list[dict]:
    """A full set of rows; the little-data angle RMSEs per run are given."""
    rows = []
    for regime in ("plenty", "little", "faster"):
        for method in bench.METHODS:
            runs = {("little", "PI-CNN"): pi_little, ("little", "CNN"): cnn_little}.get(
                (regime, method), [5.0])
            rows.append(bench.summary_row(regime, method, [metrics(v) for v in runs],
                                          (0.2, 0.3), 60.0))
    return rows


def test_targets_compare_the_means_over_runs(bench):
    # the PI-CNN loses one run of two by 1 deg but wins on the mean: met
    rows = rows_for(bench, pi_little=[9.0, 6.0], cnn_little=[8.0, 8.0])
    little = next(c for c in bench.checks(rows) if "(little)" in c["target"])
    assert little["met"] and little["value"] == pytest.approx(-0.5)
    rows = rows_for(bench, pi_little=[9.0, 8.0], cnn_little=[8.0, 8.0])
    little = next(c for c in bench.checks(rows) if "(little)" in c["target"])
    assert not little["met"] and little["value"] == pytest.approx(0.5)


def test_table_shows_the_spread_only_where_there_are_runs(bench):
    rows = rows_for(bench, pi_little=[9.0, 6.0], cnn_little=[8.0, 8.0])
    report = bench.format_report({"preset": "knee", "runs": 2, "rows": rows,
                                  "truth_residual_nm": 1e-3, "checks": bench.checks(rows)})
    lines = report.splitlines()
    assert "trained 2x" in lines[0]
    little_pi = next(line for line in lines if line.startswith("little  PI-CNN"))
    assert little_pi.split()[2:4] == ["7.50", "2.12"]  # mean and sample sd of 9 and 6
    plenty_physics = next(line for line in lines if line.startswith("plenty  physics"))
    assert plenty_physics.split()[2:4] == ["5.00", "0.900"]  # no spread column: R² follows


def test_seeds_must_be_positive(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0"])
    assert "--seeds must be at least 1" in capsys.readouterr().err
