"""The inference benchmark (benchmarks/inference.py): its three runtimes give the same network on
the default model, its timings are per runtime, and its targets are judged from them. Timings
are not asserted (the benchmark compares them in one run; ``emg-msk bench inference``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_msk_ros.paths import models_dir


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("inference")


@pytest.mark.parametrize("model", ["knee", "knee-state"])
def test_the_three_runtimes_time_the_same_network(bench, model):
    served, calls = bench.runtimes(models_dir() / model)
    assert list(calls) == list(bench.RUNTIMES)
    feeds = bench.example_inputs(served, 1)[0]
    assert list(feeds) == [spec.name for spec in served.network.inputs]
    ort = calls["onnxruntime"](feeds)
    for name in ("torchscript", "eager"):
        out = calls[name](feeds)
        # the EMG-only network stacks angle and forces in one tensor, the state-aided one not
        angle, force = out if isinstance(out, tuple) else (out[:, :1], out[:, 1:])
        np.testing.assert_allclose(angle.numpy(), ort["angle"], atol=1e-5)
        np.testing.assert_allclose(force.numpy(), ort["force"], rtol=1e-5, atol=1e-2)
    assert served.predict(*(x[0].T for x in feeds.values())).force.shape == (4,)


def test_time_calls_times_each_call_in_blocks(bench):
    timed = bench.time_calls({"a": lambda x: None, "b": lambda x: sum(range(2000))},
                             np.zeros((3, 1)), 2 * bench.BLOCK + 7)
    assert set(timed) == {"a", "b"}
    for clock in ("wall_ms", "cpu_ms"):
        assert 0 <= timed["a"][clock]["p50"] < timed["b"][clock]["p50"]
        assert timed["b"][clock]["p50"] <= timed["b"][clock]["p99"]


def timings(ort_p99: float, script_p99: float) -> dict:
    clocks = {"wall_ms": {"p50": 0.0, "p99": ort_p99}, "cpu_ms": {"p50": 0.0, "p99": ort_p99}}
    script = {c: {"p50": 0.0, "p99": script_p99} for c in ("wall_ms", "cpu_ms")}
    return {"models": {"knee": {"runtimes": {"onnxruntime": clocks, "torchscript": script}}}}


@pytest.mark.parametrize("ort_p99, script_p99, met", [
    (0.05, 0.5, [True, True]),  # fast and 0.1x
    (0.05, 0.1, [True, False]),  # fast but 0.5x TorchScript
    (0.2, 2.0, [False, True]),  # 0.1x but over 0.1 ms
])
def test_targets_are_the_knee_models_p99_and_its_ratio_to_torchscript(bench, ort_p99,
                                                                     script_p99, met):
    checks = bench.checks(timings(ort_p99, script_p99))
    assert [c["met"] for c in checks] == met * 2  # wall, then CPU time
    assert checks[1]["value"] == pytest.approx(ort_p99 / script_p99)
    assert bench.checks({"models": {}}) == []  # no knee model measured: nothing judged
