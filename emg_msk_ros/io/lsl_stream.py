"""``emg-msk stream``: a session played as a Lab Streaming Layer outlet in real time.

    emg-msk stream SESSION [--name NAME] [--chunk N] [--loop] [--wait S]
        [--format uci|csv] [--column-map FILE]

What an amplifier's LSL app does, from a recording: an outlet of type ``EMG`` (float32, volts,
the session's sample rate, ``desc/channels/channel`` with each channel's ``label`` and
``unit``), fed ``N`` samples at a time as each chunk's last sample falls due in real time and
stamped with the LSL clock (``local_clock``, s) of each sample's acquisition. So the driver's
``lsl`` source (``emg-msk run``, ``hardware.launch.py``) can be tried end to end without an
amplifier. SESSION is a session bag folder, or a recording file read with ``--format``.

Without ``LSLAPICFG`` it uses the package's loopback-only LSL configuration (and says so):
consumers must use the same file (``export LSLAPICFG=...``) to see the stream.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from emg_msk_ros.io import sources
from emg_msk_ros.io.lsl_pull import clock_offset_ns
from emg_msk_ros.io.recording import Recording

UNIT = "volts"
LINGER_S = 1.0  # the outlet stays open this long after the last chunk, for it to be delivered


def lsl_outlet(pylsl, name: str, channel_names: Sequence[str], sample_rate: float, *,
               chunk: int, source_id: str):
    """An outlet of type EMG (float32 volts) with channel labels and units in its description."""
    info = pylsl.StreamInfo(name, "EMG", len(channel_names), float(sample_rate), "float32",
                            source_id)
    channels = info.desc().append_child("channels")
    for label in channel_names:
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", UNIT)
        channel.append_child_value("type", "EMG")
    info.desc().append_child("acquisition").append_child_value("manufacturer", "emg_msk_ros")
    return pylsl.StreamOutlet(info, chunk_size=chunk)


def play(pylsl, outlet, recording: Recording, chunk: int, stop: threading.Event, *,
         loop: bool = False) -> int:
    """Push the recording's samples in real time until it ends (or ``stop``); return how many.

    Each chunk is pushed once its last sample's acquisition time has come, stamped with that
    time on the LSL clock (the others follow from the nominal rate).
    """
    source = sources.RecordingSource(recording, chunk, loop=loop)
    start_ns = time.time_ns()
    lsl_start = (start_ns - clock_offset_ns(pylsl.local_clock)) * 1e-9
    pushed = 0
    for block in source.stream(start_ns, stop):
        last = (block.stamp_ns - start_ns) * 1e-9 + (block.data.shape[0] - 1) / source.sample_rate
        outlet.push_chunk(block.data.astype("float32"), timestamp=lsl_start + last)
        pushed += block.data.shape[0]
    return pushed


def read_session(path: Path, file_format: str | None, column_map: Path | None) -> Recording:
    """A session bag folder, or a recording file in ``file_format``."""
    if path.is_dir():
        return sources.bag_recording(path)
    if file_format is None:
        raise sources.SourceError(f"{path} is not a session bag folder; for a recording file "
                                  f"give --format ({', '.join(sources.FILE_FORMATS)})")
    return sources.file_recording(path, file_format, column_map)


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``emg-msk stream``."""
    parser.description = __doc__.splitlines()[0].replace("``", "")
    parser.add_argument("session", type=Path, help="session bag folder or recording file")
    parser.add_argument("--name", default="emg_msk", help="LSL stream name (default: emg_msk)")
    parser.add_argument("--chunk", type=int, default=10,
                        help="samples per pushed chunk, as the amplifier sends them (default 10)")
    parser.add_argument("--loop", action="store_true", help="start over at the end")
    parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S s for a consumer before playing (default: play now)")
    parser.add_argument("--format", choices=sources.FILE_FORMATS,
                        help="format of a recording file (not needed for a session bag)")
    parser.add_argument("--column-map", type=Path, help="csv: YAML column map")


def run(args: argparse.Namespace) -> int:
    """Play the session; Ctrl-C (or SIGTERM) stops it."""
    from emg_msk_ros.io import lsl_config

    if args.chunk < 1:
        print(f"emg-msk stream: --chunk must be >= 1, got {args.chunk}", file=sys.stderr)
        return 2
    note = lsl_config.use_loopback()
    if note:
        print(f"emg-msk stream: {note}", file=sys.stderr)
    try:
        recording = read_session(args.session, args.format, args.column_map)
        pylsl = lsl_config.import_pylsl()
    except ImportError:
        print("emg-msk stream: needs pylsl (pip install pylsl)", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"emg-msk stream: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        outlet = lsl_outlet(pylsl, args.name, recording.channel_names, recording.sample_rate,
                            chunk=args.chunk, source_id=f"emg_msk:{args.name}:{args.session.name}")
        print(f"emg-msk stream: LSL stream {args.name!r} (type EMG): "
              f"{len(recording.channel_names)} channels ({', '.join(recording.channel_names)}) "
              f"at {recording.sample_rate:g} Hz in {args.chunk}-sample chunks, "
              f"{recording.duration:.1f} s{' looping' if args.loop else ''}; "
              f"config {lsl_config.loaded().describe()}", flush=True)
        if args.wait > 0 and not outlet.wait_for_consumers(args.wait):
            print(f"emg-msk stream: no consumer within {args.wait:g} s; playing anyway",
                  file=sys.stderr)
        pushed = play(pylsl, outlet, recording, args.chunk, stop, loop=args.loop)
        stop.wait(LINGER_S)
        print(f"emg-msk stream: {pushed} samples pushed"
              f"{' (stopped)' if stop.is_set() else ''}", flush=True)
        del outlet
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
