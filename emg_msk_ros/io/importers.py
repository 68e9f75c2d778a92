"""``emg-msk import uci|csv FILE --out SESSION``: a recording file to a session bag.

The bag has the same layout as a simulated session (see :mod:`emg_msk_ros.io.session_bag`):
raw EMG in volts on ``/emg/raw``, the knee angle on ``/joint_states`` when the file has one, and
the loader's metadata on ``/session/metadata``. The metadata names the preset that matches the
recording's joint and EMG channels (``--preset``, by default the data set's own, as
``DATASET_PRESETS``), so that ``emg-msk train`` needs no ``--preset`` for the session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emg_msk_ros.io.csv_loader import CsvColumnMap, load_csv
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.uci import load_uci_file
from emg_msk_ros.paths import config_path
from emg_msk_ros.physics.preset import load_preset, preset_path

# The preset of a data set whose joint and electrodes are known: every UCI lower-limb file
# records knee flexion with RF, BF, VM and ST, the knee preset's joint and channels.
DATASET_PRESETS = {"uci": "knee"}


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``emg-msk import``."""
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("format", choices=("uci", "csv"),
                        help="uci: a UCI lower-limb TXT file; csv: any table with --map")
    parser.add_argument("file", type=Path, help="the recording (.txt, .csv, optionally .gz)")
    parser.add_argument("--out", type=Path, required=True, help="new session bag folder")
    parser.add_argument("--map", type=Path, dest="column_map",
                        help="csv: YAML column map (see emg_msk_ros.io.csv_loader)")
    parser.add_argument("--preset", help="preset (name or YAML) to record in the session; "
                        "default: knee for uci, none for csv")
    parser.add_argument("--chunk-size", type=int, default=20,
                        help="EMG samples per message in the bag (default 20)")


def load(args: argparse.Namespace) -> Recording:
    """The recording named by the arguments."""
    if args.format == "uci":
        return load_uci_file(args.file)
    if args.column_map is None:
        raise ValueError("emg-msk import csv needs --map COLUMN_MAP.yaml")
    return load_csv(args.file, CsvColumnMap.load(args.column_map))


def name_preset(recording: Recording, preset: str | None) -> None:
    """Record ``preset`` (a name or YAML path; None: nothing) in the recording's metadata as
    ``load_preset`` finds it from anywhere: a shipped preset's name, else the absolute path.
    Refused (ValueError) unless the recording has every EMG channel of the preset."""
    if preset is None:
        return
    channels = load_preset(preset).channel_names
    missing = [c for c in channels if c not in recording.channel_names]
    if missing:
        raise ValueError(f"the recording has no channel {', '.join(missing)} of preset "
                         f"{preset!r} (it has {', '.join(recording.channel_names)})")
    path = preset_path(preset).resolve()
    shipped = path.parent == config_path("presets").resolve()
    recording.metadata["preset"] = path.stem if shipped else str(path)


def run(args: argparse.Namespace) -> int:
    """Load, write the bag, print a one-line summary; errors go to stderr with exit code 2."""
    from emg_msk_ros.io.session_bag import write_recording

    try:
        recording = load(args)
        recording.metadata.setdefault("imported_from", str(args.file))
        name_preset(recording, args.preset or DATASET_PRESETS.get(args.format))
        path = write_recording(args.out, recording, chunk_size=args.chunk_size)
    except (OSError, ValueError) as exc:
        print(f"emg-msk import: {exc}", file=sys.stderr)
        return 2
    angle = "with knee angle" if recording.angle is not None else "no angle"
    print(f"wrote {path}: {recording.emg.shape[0]} samples x {len(recording.channel_names)} "
          f"channels ({', '.join(recording.channel_names)}) at {recording.sample_rate:g} Hz, "
          f"{recording.duration:.2f} s, {angle}, preset "
          f"{recording.metadata.get('preset', 'none (give --preset to train)')}")
    for key in ("duplicate_of", "angle_warning"):
        if key in recording.metadata:
            print(f"note: {key}: {recording.metadata[key]}")
    return 0
