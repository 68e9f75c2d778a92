"""Pulling an LSL inlet's samples into reused buffers, with as little Python as possible.

pylsl's ``StreamInlet.pull_chunk`` allocates fresh arrays on each call and, asked to return once
one sample has arrived (``min_samples=1``), makes two calls into liblsl and joins their results:
tens of microseconds of Python each time the process is woken for a chunk, which on a busy or
idle machine run several times slower than in a tight loop, and every call into liblsl through
ctypes hands the GIL over (to the graph's other threads, in ``emg-msk run``) and has to get it
back. :class:`ChunkReader` calls liblsl's C function for the stream's sample type
(``lsl_pull_chunk_f``, ``_d``, ...; function objects of its own, pylsl's are untouched) straight
into one preallocated data buffer and one timestamp buffer, and keeps the GIL in calls that do
not wait (``timeout`` 0, ``lsl_local_clock``); the caller copies out what it keeps.

:func:`clock_offset_ns` relates the LSL clock to the system clock.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

import numpy as np

# pylsl channel format -> suffix of liblsl's lsl_pull_chunk_<suffix> (cf_string, 3, is not numeric)
_PULL_SUFFIX = {1: "f", 2: "d", 4: "i", 5: "s", 6: "c", 7: "l"}
# lsl_pull_chunk_*(inlet, data, stamps, data elements, stamp elements, timeout s, error code)
_PULL_ARGS = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
              ctypes.c_double, ctypes.POINTER(ctypes.c_int32))


class ChunkReader:
    """Samples of one numeric inlet pulled into ``data`` ((``capacity``, channels), the
    stream's dtype) and ``stamps`` ((``capacity``,), LSL timestamps, s)."""

    def __init__(self, pylsl, inlet, channel_format: int, channels: int, capacity: int) -> None:
        from pylsl.lib import fmt2npdtype, lib

        if not self.reads(channel_format):
            raise ValueError(f"LSL channel format {channel_format} is not numeric")
        self.channels = int(channels)
        self.data = np.zeros((capacity, self.channels), dtype=fmt2npdtype[channel_format])
        self.stamps = np.zeros(capacity, dtype=np.float64)
        name = f"lsl_pull_chunk_{_PULL_SUFFIX[channel_format]}"
        self._waiting_pull = ctypes.CFUNCTYPE(ctypes.c_ulong, *_PULL_ARGS)((name, lib))
        self._pull_now = ctypes.PYFUNCTYPE(ctypes.c_ulong, *_PULL_ARGS)((name, lib))
        self.local_clock = ctypes.PYFUNCTYPE(ctypes.c_double)(("lsl_local_clock", lib))
        self._inlet = inlet.obj
        self._data_at = self.data.ctypes.data
        self._stamps_at = self.stamps.ctypes.data
        self._sample_bytes = self.data.itemsize * self.channels
        self._error = ctypes.c_int32()
        self._error_ref = ctypes.byref(self._error)
        self._handle_error = pylsl.util.handle_error

    @staticmethod
    def reads(channel_format: int) -> bool:
        """Whether samples of this pylsl channel format can be read (numeric ones)."""
        return channel_format in _PULL_SUFFIX

    def pull(self, at: int, count: int, timeout: float) -> int:
        """Pull up to ``count`` samples into ``data[at:]`` and ``stamps[at:]``, waiting up to
        ``timeout`` s for all of them (0: only those already there); return how many came.
        Raises pylsl's ``LostError`` when the stream is gone."""
        self._error.value = 0
        values = (self._waiting_pull if timeout > 0 else self._pull_now)(
            self._inlet, self._data_at + at * self._sample_bytes, self._stamps_at + 8 * at,
            count * self.channels, count, timeout, self._error_ref)
        if self._error.value:
            self._handle_error(self._error.value)
        return values // self.channels


def clock_offset_ns(local_clock: Callable[[], float], tries: int = 8) -> int:
    """``time.time_ns()`` minus ``local_clock()`` (LSL clock, s) in ns, from the closest together
    of ``tries`` pairs of reads (a pair split by the scheduler would be off by the time it was
    kept waiting)."""
    best = None
    for _ in range(tries):
        before = time.time_ns()
        lsl_ns = round(local_clock() * 1e9)
        after = time.time_ns()
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) // 2 - lsl_ns)
    return best[1]
