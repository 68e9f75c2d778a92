"""The LSL source against real pylsl outlets on loopback: liblsl's config, resolution by name,
chunks as the amplifier sends them, and stream indices from the LSL timestamps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from emg_msk_ros.io import lsl_config, sources
from emg_msk_ros.io.lsl_stream import lsl_outlet

DEADLINE_S = 20.0  # bound on waiting for a stream event; only reached when the test fails


def wait_until(condition, what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class Consumer:
    """Iterates a source's stream in a thread, keeping every chunk."""

    def __init__(self, source: sources.LslSource) -> None:
        self.source, self.chunks, self.stop = source, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for chunk in self.source.stream(0, self.stop):
            self.chunks.append(chunk)

    @property
    def samples(self) -> int:
        return sum(c.data.shape[0] for c in self.chunks)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=DEADLINE_S)
        self.source.close()

    def indices(self) -> np.ndarray:
        return np.concatenate([c.first_sample_index + np.arange(c.data.shape[0])
                               for c in self.chunks])

    def data(self) -> np.ndarray:
        return np.concatenate([c.data for c in self.chunks])


def values(first: int, count: int, channels: int = 2) -> np.ndarray:
    """Exactly representable float32 test values (V): sample k, channel c -> (k*channels+c)/1024."""
    return (np.arange(first * channels, (first + count) * channels, dtype=np.float32)
            .reshape(count, channels) / 1024)


def test_liblsl_runs_on_the_shipped_loopback_config(pylsl):
    loaded = lsl_config.loaded()
    assert loaded.path.resolve() == lsl_config.loopback_config().resolve()
    assert loaded.problems == ()
    text = lsl_config.loopback_config().read_text()
    for line in ("ResolveScope = machine", "KnownPeers = {127.0.0.1}", "IPv6 = disable",
                 "ListenAddress = 127.0.0.1", "AddressesOverride = {127.0.0.1}"):
        assert line in text


@pytest.mark.parametrize("content, said", [
    ("[lab]\n# a '#' line is no comment to liblsl\nKnownPeers = {127.0.0.1}\n", "Error parsing"),
    (None, "not found"),
])
def test_a_config_liblsl_did_not_load_is_refused_before_any_stream(tmp_path, content, said):
    path = tmp_path / "lsl_api.cfg"
    if content is not None:
        path.write_text(content)
    check = ("from emg_msk_ros.io import sources\n"
             "sources.LslSource('never_resolved', timeout=0.1).open()\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          env=dict(os.environ, LSLAPICFG=str(path)), timeout=60)
    assert done.returncode != 0
    assert f"liblsl is not running with LSLAPICFG={path}" in done.stderr
    assert "liblsl defaults (LAN discovery)" in done.stderr and said in done.stderr


def test_a_named_stream_is_found_among_several_emg_streams(pylsl, lsl_name):
    others = [lsl_outlet(pylsl, f"{lsl_name}_{k}", ["A", "B"], 1000.0, chunk=0,
                         source_id=f"{lsl_name}_{k}") for k in range(3)]
    wanted = lsl_outlet(pylsl, lsl_name, ["RF", "VM", "BF"], 2000.0, chunk=0,
                        source_id=lsl_name)
    for _ in range(3):
        source = sources.LslSource(lsl_name, timeout=10.0)
        source.open()
        assert source.state.startswith(f"connected to LSL stream {lsl_name!r}")
        assert (source.channel_names, source.sample_rate) == (["RF", "VM", "BF"], 2000.0)
        assert source.units == ["volts"] * 3
        source.close()
    del others, wanted


def test_chunks_are_what_the_amplifier_sent_not_a_fixed_size(pylsl, lsl_name):
    """The outlet pushes 7-sample chunks every 20 ms; the source passes each on as it arrives
    (a fixed chunk size, or waiting for more, would merge them)."""
    outlet = lsl_outlet(pylsl, lsl_name, ["A", "B"], 1000.0, chunk=7, source_id=lsl_name)
    source = sources.LslSource(lsl_name, timeout=10.0)
    source.open()
    consumer = Consumer(source)
    try:
        assert outlet.wait_for_consumers(DEADLINE_S)
        t0 = pylsl.local_clock()
        for k in range(30):
            outlet.push_chunk(values(7 * k, 7), timestamp=t0 + (7 * k + 6) / 1000.0)
            time.sleep(0.02)
        wait_until(lambda: consumer.samples == 210, "210 samples")
    finally:
        consumer.close()
    np.testing.assert_array_equal(consumer.indices(), np.arange(210))
    np.testing.assert_array_equal(consumer.data(), values(0, 210))
    sizes = [c.data.shape[0] for c in consumer.chunks]
    assert max(sizes) <= source.max_chunk
    assert sum(size <= 7 for size in sizes) > len(sizes) / 2, sizes


def test_gaps_and_restarts_show_as_index_jumps(pylsl, lsl_name):
    rate, reports = 100.0, []
    first = lsl_outlet(pylsl, lsl_name, ["A", "B"], rate, chunk=0, source_id=f"{lsl_name}_1")
    source = sources.LslSource(lsl_name, timeout=10.0, report=reports.append)
    source.open()
    consumer = Consumer(source)
    try:
        assert first.wait_for_consumers(DEADLINE_S)
        t0 = pylsl.local_clock()

        def push(outlet, start, count):
            outlet.push_chunk(values(start, count),
                              timestamp=list(t0 + np.arange(start, start + count) / rate))

        push(first, 0, 20)
        push(first, 45, 10)  # samples 20..44 never sent
        wait_until(lambda: consumer.samples == 30, "the first 30 samples")
        del first  # the amplifier's app stops ...
        wait_until(lambda: "lost" in source.state, "the stream to be lost")
        second = lsl_outlet(pylsl, lsl_name, ["A", "B"], rate, chunk=0,
                            source_id=f"{lsl_name}_2")  # ... and a new one starts
        assert second.wait_for_consumers(DEADLINE_S)
        push(second, 1000, 10)
        wait_until(lambda: consumer.samples == 40, "samples after the restart")
    finally:
        consumer.close()
    expected = np.r_[0:20, 45:55, 1000:1010]
    np.testing.assert_array_equal(consumer.indices(), expected)
    np.testing.assert_array_equal(consumer.data(), values(0, 1010)[expected])
    assert any("25 samples missing before sample 45" in r for r in reports)
    assert any("945 samples missing before sample 1000 (stream restarted)" in r
               for r in reports)
    assert any("lost; waiting for it to come back" in r for r in reports)


@pytest.mark.parametrize("stamps, restarted, expected", [
    ([0, 10, 20], False, [(0, 0), (10, 0), (20, 0)]),  # on time
    ([0, 13, 20], False, [(0, 0), (10, 0), (20, 0)]),  # 3 samples late: within tolerance
    ([0, 30, 40], False, [(0, 0), (30, 20), (40, 0)]),  # a gap of 20 samples
    ([0, 5, 20], True, [(0, 0), (11, 1), (21, 0)]),  # a restart jumps even without a gap
])
def test_indexer_follows_timestamps(stamps, restarted, expected):
    indexer = sources.TimestampIndexer(1000.0, tolerance=0.005)
    got = [indexer.place(s * 1_000_000, 10, restarted=restarted and k == 1)
           for k, s in enumerate(stamps)]
    assert got == expected


def test_indexer_splits_a_pull_where_samples_are_missing():
    indexer = sources.TimestampIndexer(100.0, tolerance=0.005)
    stamps = np.r_[0:20, 45:55, 55:57] / 100.0 + 7.0
    assert indexer.runs(stamps) == [(0, 20), (20, 32)]
    assert indexer.runs(stamps[:1]) == [(0, 1)]
