"""EMG sources for the driver, without ROS: chunks of raw EMG with sequence indices and stamps.

A source has ``channel_names``, ``sample_rate`` (Hz), ``open()``, ``close()`` and
``stream(start_ns, stop) -> Iterator[Chunk]``, which yields chunks as their data becomes
available in real time and returns when the source is exhausted or ``stop`` is set.

- :class:`RecordingSource` replays a :class:`Recording` (simulated, loaded from a file, or read
  from a session bag) at its sample rate times ``rate``, from ``start_offset`` s, optionally
  looping. Stream sample ``k`` (counted from the start offset, continuing across loops) has
  stamp ``start_ns + k / sample_rate`` and is released at wall time
  ``start_ns + k / (sample_rate · rate)``: at ``rate`` 1 the stamp is the acquisition time.
- :class:`LslSource` reads a Lab Streaming Layer stream of type ``EMG`` (``pylsl``, optional).

Stamps are integer ns on the system clock (``time.time_ns()``, ROS's system time).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


class LslSource:
    """A Lab Streaming Layer stream of type ``EMG``, found by name (``pylsl`` required).

    LSL timestamps (the sender's ``local_clock``, s) are mapped to the system clock with the
    inlet's time correction and the offset between ``pylsl.local_clock()`` and
    ``time.time_ns()`` measured when the stream opens. Channel names come from the stream's
    ``desc/channels/channel/label`` entries (``CH1..CHn`` when absent). Values are taken to be
    volts times ``scale`` (e.g. 1e-6 for a stream in µV).
    """

    def __init__(self, name: str, timeout: float = 5.0, *, scale: float = 1.0,
                 max_chunk: int = 50) -> None:
        if not timeout > 0:
            raise ValueError(f"lsl timeout must be > 0 s, got {timeout}")
        self.name = name
        self.timeout = float(timeout)
        self.scale = float(scale)
        self.max_chunk = int(max_chunk)
        self.channel_names: list[str] = []
        self.sample_rate = 0.0
        self._lsl = None
        self._inlet = None
        self._offset_s = 0.0

    @staticmethod
    def _import_pylsl():
        try:
            return importlib.import_module("pylsl")
        except ImportError as exc:
            raise SourceError(
                "source 'lsl' needs the optional package pylsl (pip install pylsl, or "
                "pip install 'emg_msk_ros[lsl]'); it is not installed") from exc

    def open(self) -> None:
        """Resolve the stream (waiting up to ``timeout`` s), open an inlet, read its format."""
        lsl = self._import_pylsl()
        found = lsl.resolve_byprop("type", "EMG", timeout=self.timeout)
        names = [info.name() for info in found]
        matches = [info for info in found if not self.name or info.name() == self.name]
        if not matches:
            seen = ", ".join(names) if names else "none"
            raise SourceError(
                f"no LSL stream of type EMG named {self.name!r} within {self.timeout:g} s "
                f"(EMG streams seen: {seen})")
        info = matches[0]
        rate = float(info.nominal_srate())
        if not rate > 0:
            raise SourceError(f"LSL stream {info.name()!r} has an irregular rate; the driver "
                              "needs a fixed sample rate")
        inlet = lsl.StreamInlet(info, max_chunklen=self.max_chunk)
        full = inlet.info(timeout=self.timeout)
        self.channel_names = self._labels(full, info.channel_count())
        self.sample_rate = rate
        self._lsl, self._inlet = lsl, inlet
        self._offset_s = time.time() - lsl.local_clock() + inlet.time_correction(
            timeout=self.timeout)

    @staticmethod
    def _labels(info, count: int) -> list[str]:
        labels = []
        channel = info.desc().child("channels").child("channel")
        while len(labels) < count and not channel.empty():
            labels.append(channel.child_value("label"))
            channel = channel.next_sibling()
        if len(labels) != count or not all(labels) or len(set(labels)) != count:
            return [f"CH{i + 1}" for i in range(count)]
        return labels

    def close(self) -> None:
        """Close the inlet."""
        if self._inlet is not None:
            self._inlet.close_stream()
        self._inlet = None

    def stream(self, start_ns: int, stop: threading.Event) -> Iterator[Chunk]:
        """Yield chunks as they arrive; sample indices count received samples from 0."""
        if self._inlet is None:
            raise SourceError("LSL source is not open")
        index = 0
        while not stop.is_set():
            samples, stamps = self._inlet.pull_chunk(timeout=0.1, max_samples=self.max_chunk)
            if not samples:
                continue
            data = np.asarray(samples, dtype=np.float64) * self.scale
            stamp_ns = round((float(stamps[0]) + self._offset_s) * 1e9)
            yield Chunk(index, stamp_ns, data)
            index += data.shape[0]
