"""EMG sources of the driver (ROS-free): chunking, indices, stamps, real-time release, LSL."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from emg_msk_ros.io import sources
from emg_msk_ros.io.recording import Recording

FS = 1000.0


def recording(n: int = 95, channels: int = 3) -> Recording:
    emg = np.arange(n * channels, dtype=np.float64).reshape(n, channels) * 1e-6
    return Recording(emg=emg, sample_rate=FS, channel_names=[f"C{i}" for i in range(channels)])


class FakeClock:
    """A clock (ns) that advances only when the source waits on the stop event."""

    def __init__(self) -> None:
        self.now = 1_000_000_000
        self.waits: list[float] = []

    def __call__(self) -> int:
        return self.now


class FakeStop(threading.Event):
    """An Event whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock, stop_after: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.stop_after = stop_after

    def wait(self, timeout=None):
        self.clock.waits.append(timeout)
        self.clock.now += round(timeout * 1e9)
        if self.stop_after is not None and len(self.clock.waits) >= self.stop_after:
            self.set()
        return self.is_set()


def stream_all(source, clock, stop=None):
    start = clock.now
    released = []
    for chunk in source.stream(start, stop or FakeStop(clock)):
        released.append((clock.now, chunk))
    return start, released


def test_chunks_cover_the_recording_with_consecutive_indices_and_stamps():
    rec = recording()
    clock = FakeClock()
    source = sources.RecordingSource(rec, chunk_size=10, clock_ns=clock)
    start, released = stream_all(source, clock)
    chunks = [c for _, c in released]
    assert [c.first_sample_index for c in chunks] == list(range(0, 95, 10))
    assert [c.data.shape[0] for c in chunks] == [10] * 9 + [5]
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), rec.emg)
    # stamp = acquisition time of the first sample; released once the last sample is acquired
    for now, chunk in released:
        assert chunk.stamp_ns == start + chunk.first_sample_index * 1_000_000
        last = chunk.first_sample_index + chunk.data.shape[0] - 1
        assert now == start + last * 1_000_000


def test_rate_scales_release_times_but_not_stamps():
    clock = FakeClock()
    source = sources.RecordingSource(recording(), chunk_size=10, rate=4.0, clock_ns=clock)
    start, released = stream_all(source, clock)
    now, chunk = released[3]
    assert chunk.stamp_ns == start + 30 * 1_000_000
    assert now == start + round(39 * 1_000_000 / 4.0)


def test_start_offset_and_loop_continue_the_index_without_a_jump():
    rec = recording(n=40)
    clock = FakeClock()
    stop = FakeStop(clock, stop_after=7)
    source = sources.RecordingSource(rec, chunk_size=10, start_offset=0.02, loop=True,
                                     clock_ns=clock)
    _, released = stream_all(source, clock, stop)
    chunks = [c for _, c in released]
    assert [c.first_sample_index for c in chunks] == [0, 10, 20, 30, 40, 50]
    # the pass covers samples 20..39 of the recording, then starts over at the offset
    np.testing.assert_array_equal(chunks[0].data, rec.emg[20:30])
    np.testing.assert_array_equal(chunks[2].data, rec.emg[20:30])
    assert source.samples_per_pass == 20


def test_stop_ends_the_stream_before_the_next_chunk():
    clock = FakeClock()
    stop = FakeStop(clock, stop_after=2)
    source = sources.RecordingSource(recording(), chunk_size=10, clock_ns=clock)
    _, released = stream_all(source, clock, stop)
    assert len(released) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"chunk_size": 0}, "chunk_size"),
    ({"rate": 0.0}, "rate"),
    ({"start_offset": 1.0}, "start_offset"),
])
def test_bad_replay_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sources.RecordingSource(recording(), **kwargs)


def test_file_source_errors_name_the_problem(tmp_path):
    with pytest.raises(sources.SourceError, match="format"):
        sources.file_recording(tmp_path / "x.txt", "edf")
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.file_recording(tmp_path / "missing.txt", "uci")
    table = tmp_path / "emg.csv"
    table.write_text("t,a\n0,1\n")
    with pytest.raises(sources.SourceError, match="column map"):
        sources.file_recording(table, "csv")


def test_lsl_without_pylsl_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pylsl", None)  # import pylsl raises ImportError
    with pytest.raises(sources.SourceError, match="pip install pylsl"):
        sources.LslSource("amp").open()
