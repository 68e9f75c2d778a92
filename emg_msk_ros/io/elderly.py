"""Loader for "Electromyography and Dynamometry of the Lower Limb of the Elderly".

Silva et al., Biomed. Signal Process. Control 88:105635 (2024), doi:10.1016/j.bspc.2023.105635.
One CSV per subject (``subjectNN.csv[.gz]``, converted from the original xlsx) holds four
isometric 10 s tasks recorded one after another: VL = seated knee extension at 90° knee angle,
BF = seated knee flexion, TA = ankle dorsiflexion, GL = plantarflexion. For each task there is a
load-cell force column ``force_<TASK>task`` (kgf) and four EMG columns
``emg_<TASK>task_ch<MUSCLE>`` (vastus lateralis VL, biceps femoris BF, tibialis anterior TA,
gastrocnemius lateralis GL; µV, band-passed 20-500 Hz in hardware). EMG System SAS1000 V8 at
2000 Hz (paper); the rate is not in the file, and subject 5 has half the rows of the others.
The posture is fixed, so there is no joint angle.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emg_msk_ros.io.csv_loader import (
    CsvColumnMap,
    column_values,
    read_table,
    recording_from_table,
)
from emg_msk_ros.io.recording import Recording

SAMPLE_RATE_HZ = 2000.0
MUSCLES = ("VL", "BF", "TA", "GL")
TASKS = {
    "VL": "seated isometric knee extension, knee at 90 deg",
    "BF": "seated isometric knee flexion",
    "TA": "supine isometric ankle dorsiflexion",
    "GL": "supine isometric ankle plantarflexion",
}
_SUBJECT_RE = re.compile(r"subject0*(\d+)", re.IGNORECASE)


@dataclass
class IsometricTrial:
    """One task of one subject: the EMG recording and the load cell's force."""

    recording: Recording
    force_kgf: np.ndarray  # (n,) load-cell force on the EMG's time base, kgf


def _demographics(folder: Path, subject: int) -> dict:
    path = folder / "demographics.csv"
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if int(row["subject"]) == subject:
                return {key: float(value) for key, value in row.items() if key != "subject"}
    return {}


def load_elderly_subject(path: str | Path, *, sample_rate: float = SAMPLE_RATE_HZ
                         ) -> dict[str, IsometricTrial]:
    """The four isometric trials (keyed VL, BF, TA, GL) of one subject file.

    EMG is converted from µV to V. Demographics (age, weight, height, Berg balance score) come
    from ``demographics.csv`` beside the file when it is there.
    """
    path = Path(path)
    match = _SUBJECT_RE.search(path.name)
    subject = int(match.group(1)) if match else None
    header, data = read_table(path, ",")
    extra = _demographics(path.parent, subject) if subject is not None else {}
    trials = {}
    for task, description in TASKS.items():
        column_map = CsvColumnMap(
            emg={muscle: f"emg_{task}task_ch{muscle}" for muscle in MUSCLES},
            emg_unit="uV",
            sample_rate_hz=sample_rate,
            delimiter=",",
        )
        metadata = {
            "dataset": "elderly_emg_dynamometry",
            "subject": subject,
            "task": task,
            "task_description": description,
            "sample_rate_assumed": True,
            **extra,
        }
        recording = recording_from_table(header, data, column_map, path, metadata)
        force = column_values(header, data, f"force_{task}task", path, f"{task} load cell")
        trials[task] = IsometricTrial(recording=recording, force_kgf=force)
    return trials
