"""EMG sources for the driver, without ROS: chunks of raw EMG with sequence indices and stamps.

A source has ``channel_names``, ``sample_rate`` (Hz), ``open()``, ``close()`` and
``stream(start_ns, stop) -> Iterator[Chunk]``, which yields chunks as their data becomes
available in real time and returns when the source is exhausted or ``stop`` is set.

- :class:`RecordingSource` replays a :class:`Recording` (simulated, loaded from a file, or read
  from a session bag) at its sample rate times ``rate``, from ``start_offset`` s, optionally
  looping. Stream sample ``k`` (counted from the start offset, continuing across loops) has
  stamp ``start_ns + k / sample_rate`` and is released at wall time
  ``start_ns + k / (sample_rate · rate)``: at ``rate`` 1 the stamp is the acquisition time.
- :class:`LslSource` reads a Lab Streaming Layer stream of type ``EMG`` (``pylsl``), waiting
  for it and reconnecting when it comes back; its indices follow the LSL timestamps
  (:class:`TimestampIndexer`), so gaps show as jumps as they do in a replayed bag.

Stamps are integer ns on the system clock (``time.time_ns()``, ROS's system time).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emg_msk_ros.io.lsl_pull import ChunkReader, clock_offset_ns
from emg_msk_ros.io.recording import Recording

SOURCES = ("sim", "bag", "file", "lsl")
FILE_FORMATS = ("uci", "csv")


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message says which and why."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive raw EMG samples of every channel."""

    first_sample_index: int  # stream index of data[0]
    stamp_ns: int  # acquisition time of data[0], ns since the epoch
    data: np.ndarray  # (n, channels), V


class RecordingSource:
    """Replays a recording in real time (times ``rate``) in chunks of ``chunk_size`` samples."""

    def __init__(self, recording: Recording, chunk_size: int = 10, *, rate: float = 1.0,
                 start_offset: float = 0.0, loop: bool = False,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 sample, got {chunk_size}")
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        n = recording.emg.shape[0]
        first = int(round(start_offset * recording.sample_rate))
        if not 0 <= first < n:
            raise ValueError(f"start_offset {start_offset} s is outside the recording "
                             f"(0 .. {recording.duration:.3f} s)")
        self.recording = recording
        self.channel_names = list(recording.channel_names)
        self.sample_rate = float(recording.sample_rate)
        self.chunk_size = int(chunk_size)
        self.rate = float(rate)
        self.loop = bool(loop)
        self._first = first
        self._clock_ns = clock_ns

    @property
    def samples_per_pass(self) -> int:
        """Samples streamed per pass over the recording (from the start offset to its end)."""
        return self.recording.emg.shape[0] - self._first

    def open(self) -> None:
        """Nothing to open: the recording is in memory."""

    def close(self) -> None:
        """Nothing to release."""

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(stream index, data) of every chunk in order, without timing; endless when looping.

        Chunks never straddle the end of the recording, so a pass ends with a shorter chunk.
        """
        emg = self.recording.emg
        k = 0
        while True:
            for start in range(self._first, emg.shape[0], self.chunk_size):
                block = emg[start:start + self.chunk_size]
                yield k, block
                k += block.shape[0]
            if not self.loop:
                return

    def stream(self, start_ns: int, stop: threading.Event) -> Iterator[Chunk]:
        """Yield each chunk once its last sample's release time has passed."""
        period_ns = 1e9 / self.sample_rate
        for k, block in self.chunks():
            release_ns = start_ns + round((k + block.shape[0] - 1) * period_ns / self.rate)
            wait_s = (release_ns - self._clock_ns()) * 1e-9
            if wait_s > 0 and stop.wait(wait_s):
                return
            if stop.is_set():
                return
            yield Chunk(k, start_ns + round(k * period_ns), block)


def simulated_recording(preset: str, duration: float, seed: int,
                        sample_rate: float) -> Recording:
    """A simulated session from the physics simulator (see ``emg-msk simulate``)."""
    from emg_msk_ros.physics.simulate import simulate_session
    from emg_msk_ros.physics.synth_emg import EmgSynthSettings

    return simulate_session(preset, duration, seed,
                            emg=EmgSynthSettings(sample_rate=sample_rate))


def file_recording(path: str | Path, file_format: str, column_map: str | Path | None = None
                   ) -> Recording:
    """A recording loaded from a data file: ``uci`` (UCI lower-limb TXT) or ``csv`` (+ map)."""
    path = Path(path)
    if file_format not in FILE_FORMATS:
        raise SourceError(f"file format must be one of {', '.join(FILE_FORMATS)}, got "
                          f"{file_format!r}")
    if not path.is_file():
        raise SourceError(f"EMG file {path} does not exist")
    if file_format == "uci":
        from emg_msk_ros.io.uci import load_uci_file

        return load_uci_file(path)
    from emg_msk_ros.io.csv_loader import CsvColumnMap, load_csv

    if not column_map:
        raise SourceError(f"csv file {path} needs a column map (YAML) to say which columns "
                          "are EMG")
    return load_csv(path, CsvColumnMap.load(column_map))


def bag_recording(path: str | Path) -> Recording:
    """The session in a session bag (its ``/emg/raw`` and whatever else it holds)."""
    from emg_msk_ros.io.session_bag import read_recording

    return read_recording(path)


class TimestampIndexer:
    """Stream indices of chunks from the acquisition time of their first sample.

    Indices run on by the number of samples received while the times agree with the nominal
    rate; a chunk whose first sample comes more than ``tolerance`` s later than the samples
    before it predict gets the index its time says, so the samples missing in between show as a
    jump. After a restart (a new connection) the index jumps by at least one sample: what was
    lost meanwhile is unknown. Indices never go back.
    """

    def __init__(self, sample_rate: float, tolerance: float) -> None:
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
        if not tolerance >= 0:
            raise ValueError(f"gap tolerance must be >= 0 s, got {tolerance}")
        self.period_ns = 1e9 / sample_rate
        self.tolerance = max(0.5, tolerance * sample_rate)  # samples
        self._gap_s = (1 + self.tolerance) / sample_rate  # a longer step between samples: a gap
        self.next_index: int | None = None  # index the next chunk has without a gap
        self._last: tuple[int, int] | None = None  # (index, stamp ns) of the last chunk

    def runs(self, stamps: np.ndarray) -> list[tuple[int, int]]:
        """(begin, end) of the runs of samples in one pull whose LSL timestamps (s) have no gap
        between them (a pull may hold samples from both sides of a gap)."""
        gaps = np.flatnonzero(np.diff(stamps) > self._gap_s)
        if not gaps.size:
            return [(0, len(stamps))]
        bounds = [0, *(gaps + 1).tolist(), len(stamps)]
        return list(zip(bounds[:-1], bounds[1:]))

    def place(self, stamp_ns: int, count: int, *, restarted: bool = False) -> tuple[int, int]:
        """(index of a chunk of ``count`` samples whose first is stamped ``stamp_ns``, samples
        missing before it)."""
        if self._last is None:
            index = 0
        else:
            index = self.next_index
            predicted = self._last[0] + round((stamp_ns - self._last[1]) / self.period_ns)
            if predicted - index > self.tolerance:
                index = predicted
            if restarted:
                index = max(index, self.next_index + 1)
        missing = 0 if self.next_index is None else index - self.next_index
        self._last = (index, stamp_ns)
        self.next_index = index + count
        return index, missing


class LslSource:
    """A Lab Streaming Layer stream of type ``EMG``, found by name (``pylsl`` required).

    A resolver runs in the background from :meth:`open` to :meth:`close` and lists every EMG
    stream it sees; the source takes the one with its name (an empty name: the first listed), so
    other EMG streams do not get in the way. :meth:`open` waits up to ``timeout`` s for it; a
    stream not there yet, or one that goes away, is waited for while streaming (``state`` says
    what the source is doing; ``report`` is called with each problem). A stream that comes back
    (a restarted app: a new outlet; or the same one after a network break, once the resolver
    still lists it after it would have forgotten it) must have the same channels and rate.

    Chunks are what has arrived when the source pulls (at most ``max_chunk`` samples), each
    chunk the amplifier sent whole (see :meth:`_pull`), so the amplifier's own chunking sets the
    latency. LSL timestamps (the sender's ``local_clock``, s) are mapped to the system clock
    with the inlet's time correction and the offset between ``pylsl.local_clock()`` and
    ``time.time_ns()`` measured at each connection. The stream index of each chunk follows from
    its time on this machine's LSL clock (:class:`TimestampIndexer`, ``gap_tolerance`` s), so
    gaps and restarts show as jumps; the system clock may be slewed or stepped between two
    connections (a VM's clock catching up) without moving an index.
    Channel names come from the stream's ``desc/channels/channel/label`` entries (``CH1..CHn``
    when absent). Values are taken to be volts times ``scale`` (e.g. 1e-6 for a stream in µV).
    """

    RESOLVE_WAIT = 0.5  # s between reports while waiting for the stream
    FORGET_AFTER = 2.0  # s after which the resolver no longer lists a stream that went away
    CONNECT_WAIT = 2.0  # s for each step of connecting (info, stream, clock offset)
    PULL_WAIT = 0.1  # s a pull waits for a first sample (how soon a stop is seen)
    SILENCE_REPORT = 0.5  # s without samples between reports of a silent stream
    GATHER_WAIT = 0.0005  # s a pull waits for the rest of a chunk being unpacked
    SIZE_MEMORY = 8  # pulls whose sizes say how many samples the amplifier sends at a time

    def __init__(self, name: str, timeout: float = 5.0, *, scale: float = 1.0,
                 max_chunk: int = 100, gap_tolerance: float = 0.005,
                 report: Callable[[str], None] | None = None) -> None:
        if not timeout > 0:
            raise ValueError(f"lsl timeout must be > 0 s, got {timeout}")
        if max_chunk < 1:
            raise ValueError(f"lsl max_chunk must be >= 1 sample, got {max_chunk}")
        self.name = name
        self.timeout = float(timeout)
        self.scale = float(scale)
        self.max_chunk = int(max_chunk)
        self.gap_tolerance = float(gap_tolerance)
        self.channel_names: list[str] = []
        self.units: list[str] = []
        self.sample_rate = 0.0
        self.state = "closed"
        self._report = report or (lambda problem: None)
        self._what = f"LSL stream of type EMG named {name!r}" if name else "LSL stream of type EMG"
        self._lsl = None
        self._resolver = None
        # outlet uid -> time.monotonic() until which it is passed over: a refused outlet for
        # good, a lost one until the resolver would have forgotten it were it gone
        self._skip: dict[str, float] = {}
        self._inlet = None
        self._reader: ChunkReader | None = None  # pulls the inlet's samples into its buffers
        self._uid = ""
        self._offset_ns = 0
        self._correction = 0.0  # s to add to the sender's LSL times to get this clock's
        self._indexer: TimestampIndexer | None = None
        self._sizes: collections.deque[int] = collections.deque(maxlen=self.SIZE_MEMORY)

    @staticmethod
    def _import_pylsl():
        from emg_msk_ros.io import lsl_config

        try:
            return lsl_config.import_pylsl()
        except ImportError as exc:
            raise SourceError(
                "source 'lsl' needs the package pylsl (pip install pylsl, or pip install "
                "'emg_msk_ros[lsl]'); it is not installed") from exc
        except lsl_config.LslConfigError as exc:
            raise SourceError(str(exc)) from exc

    def _set_state(self, state: str, *, problem: bool = True) -> None:
        self.state = state
        if problem:
            self._report(state)

    def open(self) -> None:
        """Check liblsl's configuration, then wait up to ``timeout`` s for the stream and connect
        to it; without it, :meth:`stream` keeps looking."""
        self._lsl = self._import_pylsl()
        if self._resolver is None:
            self._resolver = self._lsl.ContinuousResolver(pred="type='EMG'",
                                                          forget_after=self.FORGET_AFTER)
        info = self._find(self.timeout)
        if info is not None and self._connect(info):
            return
        if info is not None and not float(info.nominal_srate()) > 0:
            raise SourceError(f"LSL stream {info.name()!r} has an irregular rate; the driver "
                              "needs a fixed sample rate")
        if info is not None and not ChunkReader.reads(info.channel_format()):
            raise SourceError(f"LSL stream {info.name()!r} sends text (channel format string); "
                              "the driver needs numbers")
        seen = sorted({i.name() for i in self._resolver.results()})
        self._set_state(f"waiting for the {self._what} (not found within {self.timeout:g} s; "
                        f"EMG streams seen: {', '.join(seen) or 'none'})")

    def _find(self, wait: float, stop: threading.Event | None = None):
        """The info of the stream, if the resolver lists it within ``wait`` s (or ``stop``)."""
        end = time.monotonic() + wait
        while True:
            for info in self._resolver.results():
                if ((not self.name or info.name() == self.name)
                        and self._skip.get(info.uid(), 0.0) <= time.monotonic()):
                    return info
            if time.monotonic() >= end or (stop or threading.Event()).wait(0.02):
                return None

    def _connect(self, info) -> bool:
        """Open an inlet on ``info``; False (and why, in ``state``) if it cannot be used."""
        lsl = self._lsl
        rate = float(info.nominal_srate())
        if not rate > 0:
            self._skip[info.uid()] = math.inf
            self._set_state(f"{self._what} has an irregular rate; not used")
            return False
        if not ChunkReader.reads(info.channel_format()):
            self._skip[info.uid()] = math.inf
            self._set_state(f"{self._what} sends text (channel format string); not used")
            return False
        inlet = lsl.StreamInlet(info, recover=False)
        try:
            full = inlet.info(timeout=self.CONNECT_WAIT)
            channels = self._labels(full, info.channel_count())
            if self.channel_names and (channels, rate) != (self.channel_names, self.sample_rate):
                self._set_state(
                    f"{self._what} is back with {len(channels)} channels ({', '.join(channels)}) "
                    f"at {rate:g} Hz instead of {len(self.channel_names)} "
                    f"({', '.join(self.channel_names)}) at {self.sample_rate:g} Hz; not used")
                inlet.close_stream()
                self._skip[info.uid()] = math.inf
                return False
            inlet.open_stream(timeout=self.CONNECT_WAIT)
            correction = inlet.time_correction(timeout=self.CONNECT_WAIT)
        except (lsl.util.TimeoutError, lsl.util.LostError) as exc:
            inlet.close_stream()
            self._set_state(f"{self._what} found but not reachable ({exc}); retrying")
            return False
        self._offset_ns = clock_offset_ns(lsl.local_clock) + round(correction * 1e9)
        self._correction = correction
        self.channel_names, self.sample_rate = channels, rate
        self.units = self._units(full, len(channels))
        if self._indexer is None:
            self._indexer = TimestampIndexer(rate, self.gap_tolerance)
        self._inlet, self._uid = inlet, info.uid()
        self._reader = ChunkReader(lsl, inlet, info.channel_format(), len(channels),
                                   self.max_chunk)
        self._sizes.clear()
        self._set_state(f"connected to LSL stream {info.name()!r} on {info.hostname()}",
                        problem=False)
        return True

    @staticmethod
    def _channels(info, count: int, field: str) -> list[str]:
        values = []
        channel = info.desc().child("channels").child("channel")
        while len(values) < count and not channel.empty():
            values.append(channel.child_value(field))
            channel = channel.next_sibling()
        return values

    @classmethod
    def _labels(cls, info, count: int) -> list[str]:
        labels = cls._channels(info, count, "label")
        if len(labels) != count or not all(labels) or len(set(labels)) != count:
            return [f"CH{i + 1}" for i in range(count)]
        return labels

    @classmethod
    def _units(cls, info, count: int) -> list[str]:
        units = cls._channels(info, count, "unit")
        return units if len(units) == count and all(units) else []

    def _disconnect(self) -> None:
        if self._inlet is not None:
            self._inlet.close_stream()
        self._inlet = self._reader = None

    def close(self) -> None:
        """Close the inlet and stop resolving."""
        self._disconnect()
        self._resolver = None
        self.state = "closed"

    def _pull(self) -> int:
        """Pull the samples that have arrived into the reader's buffers, waiting up to
        PULL_WAIT s for the first; return how many (at most ``max_chunk``).

        The inlet's receiving thread hands samples over one by one as it unpacks them, and the
        first sample of an amplifier's chunk wakes the pull at once, mostly before the rest is
        unpacked (the woken pull takes the CPU): taken as it is, one chunk would leave in two
        or more messages, the rest behind the first one's publishing and conditioning. So a pull
        with fewer samples than the amplifier sends at a time (the most it took in the last
        SIZE_MEMORY pulls) waits up to GATHER_WAIT s for the rest, as far as the clock says they
        had been acquired when it woke (later ones cannot have been sent with them). A complete
        chunk is not held back; a chunk smaller than the recent ones costs that wait.
        """
        reader = self._reader
        count = reader.pull(0, 1, self.PULL_WAIT)
        if not count:
            return 0
        acquired = int((reader.local_clock() - self._correction - reader.stamps[0])
                       * self.sample_rate)  # after the first, when it was pulled
        wanted = min(acquired, max(self._sizes, default=self.max_chunk) - 1)
        if wanted > 0:
            count += reader.pull(1, wanted, self.GATHER_WAIT)
        if count < self.max_chunk:  # and whatever else has arrived
            count += reader.pull(count, self.max_chunk - count, 0.0)
        self._sizes.append(count)
        return count

    def stream(self, start_ns: int, stop: threading.Event) -> Iterator[Chunk]:
        """Yield chunks as they arrive (until ``stop``); reconnect when the stream comes back."""
        if self._lsl is None:
            raise SourceError("LSL source is not open")
        lost = self._lsl.util.LostError
        restarted = False
        last_sample = silence_reported = time.monotonic()
        while not stop.is_set():
            if self._inlet is None:
                info = self._find(self.RESOLVE_WAIT, stop)
                if info is None:
                    self._report(self.state)  # still waiting, or still lost
                    continue
                if not self._connect(info):
                    stop.wait(self.RESOLVE_WAIT)
                    continue
                last_sample = silence_reported = time.monotonic()
                restarted = self._indexer.next_index is not None
            try:
                count = self._pull()
            except lost:
                # still listed after it would have been forgotten: it is back (a network break)
                self._skip[self._uid] = time.monotonic() + self.FORGET_AFTER + self.RESOLVE_WAIT
                self._disconnect()
                self._set_state(f"{self._what} lost; waiting for it to come back")
                continue
            if stop.is_set():  # pulled while stopping: not published
                return
            now = time.monotonic()
            if not count:
                if now - max(last_sample, silence_reported) >= self.SILENCE_REPORT:
                    silence_reported = now
                    self._set_state(f"{self._what} is connected but sends no samples")
                continue
            last_sample = now
            self.state = "streaming"
            data = np.multiply(self._reader.data[:count], self.scale, dtype=np.float64)
            stamps = self._reader.stamps[:count]
            for begin, end in self._indexer.runs(stamps):  # split where samples are missing
                stamp_ns = round(float(stamps[begin]) * 1e9) + self._offset_ns
                # indexed on this machine's LSL clock (monotonic), which the system clock's
                # adjustments between two connections do not move
                index, missing = self._indexer.place(
                    round((float(stamps[begin]) + self._correction) * 1e9), end - begin,
                    restarted=restarted)
                if missing:
                    self._report(f"{self._what}: {missing} samples missing before sample "
                                 f"{index}" + (" (stream restarted)" if restarted else ""))
                restarted = False
                yield Chunk(index, stamp_ns, data[begin:end])
