"""The LSL source against real pylsl outlets on loopback: liblsl's config, resolution by name,
chunks as the amplifier sends them, and stream indices from the LSL timestamps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest

from emg_msk_ros.io import lsl_config, lsl_pull, sources
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


@pytest.mark.parametrize("channel_format, dtype", [("double64", np.float64), ("int16", np.int16)])
def test_every_numeric_sample_type_arrives_exactly(pylsl, lsl_name, channel_format, dtype):
    """Samples are read in the stream's own type (an amplifier in integer counts: ``scale``
    volts per count), then scaled."""
    info = pylsl.StreamInfo(lsl_name, "EMG", 3, 1000.0, channel_format, lsl_name)
    outlet = pylsl.StreamOutlet(info)
    source = sources.LslSource(lsl_name, timeout=10.0, scale=0.5e-6)
    source.open()
    consumer = Consumer(source)
    sent = (np.arange(60).reshape(20, 3) * 1001 - 30000).astype(dtype)
    try:
        assert outlet.wait_for_consumers(DEADLINE_S)
        outlet.push_chunk(sent, timestamp=pylsl.local_clock())
        wait_until(lambda: consumer.samples == 20, "20 samples")
    finally:
        consumer.close()
    np.testing.assert_array_equal(consumer.indices(), np.arange(20))
    # each value is one float64 product: no error beyond that rounding
    np.testing.assert_allclose(consumer.data(), sent.astype(np.float64) * 0.5e-6, rtol=1e-15)


def test_a_stream_of_text_is_refused(pylsl, lsl_name):
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(lsl_name, "EMG", 2, 1000.0, "string", lsl_name))
    with pytest.raises(sources.SourceError, match=f"LSL stream '{lsl_name}' sends text"):
        sources.LslSource(lsl_name, timeout=10.0).open()
    del outlet


class UnpackingInlet:
    """A stand-in for an inlet's :class:`~emg_msk_ros.io.lsl_pull.ChunkReader` that plays out,
    on a simulated clock, the race between liblsl's receiving thread and a pull: each amplifier
    chunk arrives whole at its send time, and the receiving thread unpacks it into the queue
    sample by sample; a pull blocked on the first sample wakes as soon as that one is queued
    and, running at once, finds the rest not yet unpacked (they are while it blocks again).
    ``now`` (s) is the simulated clock."""

    def __init__(self, chunks: list[tuple[float, np.ndarray, np.ndarray]],
                 capacity: int = 100, channels: int = 2) -> None:
        self.chunks = list(chunks)  # (send time s, LSL stamps s, samples), in order
        self.now = 0.0
        self.queued: list[tuple[float, np.ndarray]] = []
        self.unpacking: list[tuple[float, np.ndarray]] = []  # arrived, not yet queued
        self.data = np.zeros((capacity, channels), dtype=np.float32)
        self.stamps = np.zeros(capacity)
        self.lsl = types.SimpleNamespace(util=types.SimpleNamespace(LostError=ConnectionError))

    def local_clock(self) -> float:
        return self.now

    def _arrive(self, until: float) -> bool:
        """The next chunk arrives if it is sent by ``until`` (the clock moves to it)."""
        if not self.chunks or self.chunks[0][0] > until:
            return False
        sent, stamps, data = self.chunks.pop(0)
        self.now = max(self.now, sent)
        self.unpacking += list(zip(stamps, data))
        return True

    def pull(self, at: int, count: int, timeout: float) -> int:
        """The reader's pull: up to ``count`` samples into ``data[at:]``, ``stamps[at:]``,
        waiting up to ``timeout`` for all of them."""
        if timeout > 0:  # blocked: the receiving thread runs
            if len(self.queued) < count and not self.unpacking:
                self._arrive(self.now + timeout)
            if count == 1 and not self.queued and self.unpacking:  # woken by the first
                self.queued.append(self.unpacking.pop(0))
            else:
                self.queued += self.unpacking
                self.unpacking = []
            if len(self.queued) < count:  # waited in vain for the rest
                self.now += timeout
        taken, self.queued = self.queued[:count], self.queued[count:]
        for k, (stamp, sample) in enumerate(taken):
            self.stamps[at + k], self.data[at + k] = stamp, sample
        return len(taken)


def connected_to(source: sources.LslSource, inlet: UnpackingInlet, rate: float,
                 channels: int = 2) -> None:
    """``source`` as if connected to ``inlet`` (a stream at ``rate`` Hz, LSL clock = system
    clock + 0)."""
    source._lsl, source._inlet, source._reader = inlet.lsl, inlet, inlet
    source.sample_rate, source.channel_names = rate, [f"CH{k + 1}" for k in range(channels)]
    source._indexer = sources.TimestampIndexer(rate, source.gap_tolerance)


@pytest.mark.parametrize("delay", [0.0002, 0.0008])  # under and over one sample period
def test_a_chunk_being_unpacked_is_passed_on_whole_and_never_held_back(delay):
    """10-sample chunks at 2 kHz, each sent ``delay`` s after its last sample is acquired: each
    leaves the source as one chunk (a pull woken by its first sample waits for the rest being
    unpacked) and, once the source has seen how many samples the amplifier sends at a time,
    as soon as it arrives (no wait for samples the clock says are acquired but not yet sent)."""
    rate, size, count = 2000.0, 10, 12
    stamps = [(10.0 + np.arange(k * size, (k + 1) * size) / rate) for k in range(count)]
    inlet = UnpackingInlet([(s[-1] + delay, s, values(k * size, size))
                            for k, s in enumerate(stamps)])
    source = sources.LslSource("amplifier")
    connected_to(source, inlet, rate)
    stop, chunks, passed_on = threading.Event(), [], []
    for chunk in source.stream(0, stop):
        chunks.append(chunk)
        passed_on.append(inlet.now)
        if len(chunks) == count:
            break
    assert [c.data.shape[0] for c in chunks] == [size] * count
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]),
                                  values(0, size * count))
    assert [c.first_sample_index for c in chunks] == list(range(0, size * count, size))
    sent = [s[-1] + delay for s in stamps]
    assert passed_on[1:] == pytest.approx(sent[1:], abs=1e-9)
    assert passed_on[0] <= sent[0] + source.GATHER_WAIT + 1e-9


def test_a_stream_sent_sample_by_sample_is_not_gathered_into_long_chunks():
    """An outlet that pushes each sample alone, 0.8 ms (more than a sample period) after it is
    acquired: at each pull the clock says another sample has been acquired, and it does arrive
    within GATHER_WAIT; a pull takes at most that one more (what had been acquired when it
    woke), rather than gathering sample after sample as they keep coming."""
    rate, count, delay = 2000.0, 200, 0.0008
    stamps = 10.0 + np.arange(count) / rate
    inlet = UnpackingInlet([(t + delay, np.array([t]), values(k, 1))
                            for k, t in enumerate(stamps)])
    source = sources.LslSource("amplifier")
    connected_to(source, inlet, rate)
    chunks = []
    for chunk in source.stream(0, threading.Event()):
        chunks.append(chunk)
        if sum(c.data.shape[0] for c in chunks) >= count - 1:
            break
    assert max(c.data.shape[0] for c in chunks) <= 2
    data = np.concatenate([c.data for c in chunks])
    np.testing.assert_array_equal(data, values(0, len(data)))


@pytest.mark.parametrize("clock_step_ms", [0, 20])
def test_gaps_and_restarts_show_as_index_jumps(pylsl, lsl_name, monkeypatch, clock_step_ms):
    """With ``clock_step_ms``, the system clock has moved against the LSL clock by then when the
    stream comes back (a slewed or stepped clock): the indices stay the stream's own."""
    offsets = []

    def offset_ns(local_clock):
        offsets.append(lsl_pull.clock_offset_ns(local_clock) + len(offsets) * clock_step_ms
                       * 1_000_000)
        return offsets[-1]

    monkeypatch.setattr(sources, "clock_offset_ns", offset_ns)
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
    assert len(offsets) == 2  # one per connection


def test_the_clock_offset_comes_from_the_closest_pair_of_reads(monkeypatch):
    """The LSL clock runs 7 s behind the system clock; the first read of it is kept waiting
    3 ms (the midpoint of the pair around it would be 1.5 ms off), the others 1 us."""
    now = [1_000_000_000_000]
    waits = iter([3_000_000] + [1_000] * 7)

    def local_clock() -> float:
        now[0] += next(waits)
        return (now[0] - 7_000_000_000) * 1e-9

    monkeypatch.setattr(lsl_pull, "time", types.SimpleNamespace(time_ns=lambda: now[0]))
    assert lsl_pull.clock_offset_ns(local_clock) == pytest.approx(7_000_000_000, abs=1_000)


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
