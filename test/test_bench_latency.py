"""The latency benchmark's LSL bookkeeping (benchmarks/latency.py): the driver's hop and the bare
inlet's, compared chunk by chunk."""

from __future__ import annotations

import numpy as np


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
