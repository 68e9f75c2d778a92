"""The latency benchmark's LSL bookkeeping (benchmarks/latency.py): the driver's hop and the bare
inlet's, compared chunk by chunk; estimates timed from the driver's chunks."""

from __future__ import annotations

import types

import numpy as np
import pytest


def test_hops_are_compared_for_the_same_chunk_only(load_benchmark):
    latency = load_benchmark("latency")
    period = round(1e9 / latency.SAMPLE_RATE)
    ends = 1_000_000_000 + np.arange(5) * 10 * period  # newest samples of five 10-sample chunks
    bare = np.column_stack([ends + 20_000, [300_000, 400_000, 350_000, 500_000, 310_000]])
    hops = np.array([
        (ends[0] - 17_000, 450_000),  # each process maps the LSL clock on its own: ~µs apart
        (ends[1] - 9 * period, 4_900_000),  # a chunk's first sample alone: not a chunk's end
        (ends[1], 700_000),
        (ends[3] + 30_000, 520_000),
    ])  # chunks 2 and 4 never handed over by the driver
    got = latency.same_chunk_difference(hops, bare[::-1])  # the bare rows in any order
    np.testing.assert_array_equal(got, [[ends[0] - 17_000, 150_000], [ends[1], 300_000],
                                        [ends[3] + 30_000, 20_000]])
    assert latency.same_chunk_difference([], bare).shape == (0, 2)


def test_over_lsl_each_estimate_is_timed_from_its_chunk_in_the_driver(load_benchmark):
    """Without the probe's /emg/raw (--source lsl), an estimate's chunk is the latest one the
    driver's source handed over stamped at or before the estimate's stamp."""
    latency = load_benchmark("latency")
    ms = 1_000_000
    chunks = 10_000 * ms + np.arange(6) * 5 * ms  # first samples of 10-sample chunks
    stamps = chunks[[1, 3, 5]] + 4_500_000  # each estimate: the last sample of a chunk
    joint = np.column_stack([stamps, stamps + 2 * ms])
    samples = {"emg_raw": np.empty((0, 2), dtype=np.int64), "msk_joint_states": joint,
               "assist_state": np.column_stack([stamps, stamps + 3 * ms])}
    args = types.SimpleNamespace(executor="events", duration=1.0, realtime=False,
                                 intra_process=True)
    estimator = types.SimpleNamespace(channel_names=["A"] * 8, model_rate=100.0)
    result = latency.summarise(samples, [9_000 * ms, 11_000 * ms], 0.3,
                               np.array([[0.0, 400.0], [1.0, 400.0]]), {}, estimator, args,
                               chunk_stamps=list(chunks[::-1]), load=(1.0, 1.5))
    table = result["latency_ms"]
    assert table["estimate (from its chunk's stamp)"]["p50"] == pytest.approx(6.5)
    assert table["estimate (from EMG stamp)"]["p50"] == pytest.approx(2.0)
    assert table["command (from EMG stamp)"]["max"] == pytest.approx(3.0)
    assert table["emg/raw hop (from release)"]["n"] == 0
    assert result["load_average"] == [1.0, 1.5]


def test_targets_are_not_judged_while_the_system_clock_moves(load_benchmark):
    latency = load_benchmark("latency")
    ratio = {"p50": 1.2, "p99": 1.1}
    assert latency.judge_targets(2.5, ratio, 0.02) == {
        "estimate p99 <= 3 ms": True, "LSL hop <= 1.5x bare (p50 and p99)": True}
    assert latency.judge_targets(3.5, {"p50": 1.6, "p99": 1.0}, -0.05) == {
        "estimate p99 <= 3 ms": False, "LSL hop <= 1.5x bare (p50 and p99)": False}
    assert latency.judge_targets(2.5, ratio, 100.0) is None  # 5 ms/s over 20 s
    assert latency.judge_targets(2.5, ratio, -0.2) is None
