"""Loader for the UCI "EMG dataset in Lower Limb" (Sanchez & Sotelo; UCI dataset 278).

Files ``<subject><N|A><task>.txt`` (optionally ``.gz``; extra text after the task is allowed,
e.g. ``5Nsen_copy.txt``): a text header ("File Name: ...", one "Channel k: 'NAME', N values,
engineering units: UNIT ..." line per column, sometimes a "Digitals combined ..." line), a blank
line, then tab-separated rows RF, BF, VM, ST (mV) and FX (knee goniometer, deg), plus a digital
event column in some files. The release's files use three headers, all read here:

- normal group (N): channels 1-5 'RF', 'BF', 'VM', 'ST', 'FX' (the dataset's BDSEMG_eng.txt);
- pathology group, subjects 1-8: channels 4-8 'Recto Femoral', 'Biceps Femoral', 'Vasto
  Medial', 'EMG Semitendinoso', 'Flexo-Extension';
- pathology group, subjects 9-11: channels 1-5 'Recto femoral', 'Biceps Femoral', 'Vasto
  Medial', 'Semitendinoso', 'Flexo', then a "Digitals combined" line and a 6th (event) column.

Columns follow the order of the channel lines (the logger's channel numbers, from 1 or from 4,
are not column indices). Names are matched ignoring case, accents, punctuation and an "EMG"
prefix; a name that matches none of the spellings in ``CHANNEL_SPELLINGS``, a channel named
twice, a missing channel or data rows with another column count than the header's are refused
with an error naming it.

Knee angle convention (as for every :class:`Recording`): flexion positive, 0 = full extension,
rad. The goniometer's sign and offset differ per file, so flexion is rebuilt from the protocol:

    flexion_deg = REST_FLEXION_DEG[task] + sign · (FX − FX_rest)

For ``sen`` (knee extension from sitting) and ``pie`` (knee flexion standing) FX_rest is the
median FX over the first ``REST_WINDOW_S`` of the file, where the subject is at rest: seated
with the knee at ~90°, or standing with the knee at ~0°; ``sign`` makes the file's dominant
excursion from rest go the way the task moves (toward extension for ``sen``, toward flexion for
``pie``). The gait files (``mar``) begin mid-stride, so their first samples are no rest posture
(read as one, they gave up to 35° of hyperextension). Over a stride the knee stays near
extension through stance and makes one brief large flexion in swing, so for gait ``sign`` puts
the file's median nearer its extended end (2nd/98th percentile) and FX_rest is that end, the
most extended posture of the stride, at 0°. ``metadata["angle_warning"]`` says when the result
leaves [-10°, 150°].
"""

from __future__ import annotations

import gzip
import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np

from emg_msk_ros.io.recording import Recording

SAMPLE_RATE_HZ = 1000.0  # Biometrics DataLOG MWX8 (dataset description)
# The knee preset's joint (config/presets/knee.yaml, OpenSim's coordinate name): knee flexion,
# rad, 0 = full extension. Named so, the recordings train and score against that preset as is.
JOINT_NAME = "knee_angle_r"
REST_WINDOW_S = 0.2
REST_FLEXION_DEG = {"sen": 90.0, "pie": 0.0, "mar": 0.0}
TASK_TOWARD_FLEXION = {"sen": False, "pie": True, "mar": True}
REST_AT_START = {"sen": True, "pie": True, "mar": False}  # else: the stride's extended end
EXTREME_PERCENTILE = 2.0  # ends of a file's excursion (robust to goniometer spikes)
TASKS = {
    "mar": "gait (marcha)",
    "pie": "standing knee flexion (de pie)",
    "sen": "seated knee extension (sentado)",
}
GROUPS = {"N": "normal", "A": "abnormal"}
EMG_CHANNELS = ("RF", "BF", "VM", "ST")
# Recordings that the release ships twice under two names (identical data rows).
KNOWN_DUPLICATES = {"2Nsen": "1Nsen", "2Npie": "1Npie"}

_NAME_RE = re.compile(r"^(\d+)([AN])(mar|pie|sen)(?:[^a-z].*)?\.txt(?:\.gz)?$", re.IGNORECASE)
_CHANNEL_RE = re.compile(
    r"^Channel\s+\d+:\s*'([^']*)'\s*,\s*(\d+)\s+values\s*,\s*engineering units:\s*([^,]+)",
    re.IGNORECASE)
_EXTRAPOLATED_RE = re.compile(r"extrapolated from\s+(\d+)\s+to\s+(\d+)", re.IGNORECASE)
# Spellings of each column, as normalised by _normalise (lower case, no accents or punctuation,
# no "EMG " prefix): the release's English and Spanish headers plus the English muscle names.
CHANNEL_SPELLINGS = {
    "RF": ("rf", "recto femoral", "rectus femoris"),
    "BF": ("bf", "biceps femoral", "biceps femoris"),
    "VM": ("vm", "vasto medial", "vastus medialis", "vasto interno", "vastus internus"),
    "ST": ("st", "semitendinoso", "semitendinosus"),
    "FX": ("fx", "flexo", "flexo extension", "flexoextension", "flexion extension",
           "knee flexion"),
}
_UNIT_SCALE = {"mv": 1e-3, "uv": 1e-6, "µv": 1e-6, "v": 1.0}


class UciFormatError(ValueError):
    """A file that does not follow the UCI lower-limb layout; the message names file and line."""


def _normalise(name: str) -> str:
    """``name`` lower-cased, without accents, punctuation or a leading "EMG" word."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    words = re.sub(r"[^a-z0-9]+", " ", plain.lower()).split()
    if words[:1] == ["emg"] and len(words) > 1:
        words = words[1:]
    return " ".join(words)


def _canonical(name: str, path: Path) -> str:
    key = _normalise(name)
    for canonical, spellings in CHANNEL_SPELLINGS.items():
        if key in spellings:
            return canonical
    known = "; ".join(f"{c}: {', '.join(s)}" for c, s in CHANNEL_SPELLINGS.items())
    raise UciFormatError(f"{path}: unknown channel name {name!r} in the header (known, "
                         f"ignoring case, accents and an EMG prefix: {known})")


def parse_file_name(path: str | Path) -> tuple[int, str, str]:
    """(subject, group 'normal'|'abnormal', task 'mar'|'pie'|'sen') from a UCI file name."""
    match = _NAME_RE.match(Path(path).name)
    if not match:
        raise UciFormatError(
            f"{path}: name does not look like <subject><N|A><mar|pie|sen>.txt[.gz]; pass "
            "subject, group and task explicitly"
        )
    return int(match.group(1)), GROUPS[match.group(2).upper()], match.group(3).lower()


def _read_lines(path: Path) -> list[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    else:
        raw = path.read_bytes()
    return raw.decode("latin-1").replace("\r", "").split("\n")


def _is_data(line: str) -> bool:
    fields = line.split("\t")
    try:
        float(fields[0])
    except ValueError:
        return False
    return len(fields) >= 2


def _parse_header(lines: list[str], path: Path) -> tuple[list[str], list[float], int, dict]:
    """Column names (canonical), unit scales, number of columns and header facts."""
    names, scales, facts = [], [], {}
    digital = False
    for line in lines:
        if line.lower().startswith("file name:"):
            facts["original_name"] = line.split(":", 1)[1].strip()
        elif line.lower().startswith("digitals combined"):
            digital = True
        elif match := _CHANNEL_RE.match(line):
            name = _canonical(match.group(1), path)
            if name in names:
                raise UciFormatError(f"{path}: two header channels are {name}: "
                                     f"{facts['header_names'][name]!r} and {match.group(1)!r}")
            facts.setdefault("header_names", {})[name] = match.group(1)
            unit = match.group(3).strip().lower()
            if name == "FX":
                if unit not in ("deg", "degrees"):
                    raise UciFormatError(f"{path}: goniometer unit {unit!r}, expected deg")
                scale = 1.0  # stays in degrees until the rest/sign rule has been applied
            elif unit in _UNIT_SCALE:
                scale = _UNIT_SCALE[unit]
                facts["emg_unit"] = match.group(3).strip()
            else:
                raise UciFormatError(f"{path}: channel {name} has unknown unit {unit!r}")
            names.append(name)
            scales.append(scale)
            if extrapolated := _EXTRAPOLATED_RE.search(line):
                facts["angle_source_rate_hz"] = float(extrapolated.group(1))
                facts["sample_rate_hz"] = float(extrapolated.group(2))
    if not names:  # no channel lines: the column order of the dataset description
        names, scales = ["RF", "BF", "VM", "ST", "FX"], [1e-3] * 4 + [1.0]
        facts["header"] = "no channel lines; assumed RF BF VM ST (mV) FX (deg)"
        facts["emg_unit"] = "mV"
    missing = [c for c in (*EMG_CHANNELS, "FX") if c not in names]
    if missing:
        raise UciFormatError(f"{path}: header lacks channel(s) {', '.join(missing)}")
    facts["digital_column"] = digital
    return names, scales, len(names) + int(digital), facts


def _complete(line: str, n_columns: int) -> bool:
    fields = line.split("\t")
    return len(fields) >= n_columns and all(f.strip() for f in fields[:n_columns])


def _parse_rows(lines: list[str], first: int, n_columns: int, path: Path) -> tuple[np.ndarray, int]:
    """Data rows as floats; trailing short rows (fewer filled fields) are dropped and counted.

    A short or non-numeric row inside the data is an error naming the line.
    """
    end = len(lines)
    while end > first and not _complete(lines[end - 1], n_columns):
        end -= 1
    if end == first:
        raise UciFormatError(f"{path}: no complete data rows")
    try:
        data = np.loadtxt(lines[first:end], delimiter="\t", usecols=range(n_columns), ndmin=2)
    except ValueError as exc:
        raise UciFormatError(
            f"{path}: bad data row (line numbers count from line {first + 1} of the file): {exc}"
        ) from exc
    dropped = sum(1 for line in lines[end:] if line.strip())
    return data, dropped


def flexion_from_goniometer(fx_deg: np.ndarray, task: str, sample_rate: float
                            ) -> tuple[np.ndarray, dict]:
    """Knee flexion (deg, 0 = extension) from a raw goniometer trace, by the protocol rule.

    Returns the flexion and the facts used (rest value, sign, rest flexion).
    """
    if task not in REST_FLEXION_DEG:
        raise ValueError(f"task must be one of {', '.join(REST_FLEXION_DEG)}, got {task!r}")
    low, median, high = np.percentile(fx_deg, [EXTREME_PERCENTILE, 50.0,
                                               100.0 - EXTREME_PERCENTILE])
    if REST_AT_START[task]:
        rest = float(np.median(fx_deg[:max(1, round(REST_WINDOW_S * sample_rate))]))
        dominant = high - rest if abs(high - rest) >= abs(low - rest) else low - rest
        sign = 1.0 if (dominant >= 0) == TASK_TOWARD_FLEXION[task] else -1.0
    else:  # gait: flexion = sign * (FX - FX at the extended end), the median near that end
        sign = 1.0 if median - low <= high - median else -1.0
        rest = float(low if sign > 0 else high)
    flexion = REST_FLEXION_DEG[task] + sign * (fx_deg - rest)
    facts = {"fx_rest_deg": rest, "fx_sign": sign, "rest_flexion_deg": REST_FLEXION_DEG[task]}
    lo, hi = float(flexion.min()), float(flexion.max())
    if lo < -10.0 or hi > 150.0:
        facts["angle_warning"] = (
            f"normalised flexion spans {lo:.1f}..{hi:.1f} deg: the file may not start at the "
            f"rest posture assumed for task {task} ({REST_FLEXION_DEG[task]:g} deg)"
        )
    return flexion, facts


def load_uci_file(path: str | Path, *, subject: int | None = None, group: str | None = None,
                  task: str | None = None) -> Recording:
    """One UCI lower-limb file as a :class:`Recording` (EMG in V, knee flexion in rad).

    ``subject``/``group``/``task`` override what the file name says (needed when it does not
    follow the release's naming).
    """
    path = Path(path)
    if subject is None or group is None or task is None:
        named = parse_file_name(path)
        subject = named[0] if subject is None else subject
        group = named[1] if group is None else group
        task = named[2] if task is None else task
    if group not in GROUPS.values() or task not in TASKS:
        raise ValueError(f"{path}: group must be normal or abnormal and task one of "
                         f"{', '.join(TASKS)}; got {group!r}, {task!r}")
    lines = _read_lines(path)
    first = next((i for i, line in enumerate(lines) if _is_data(line)), None)
    if first is None:
        raise UciFormatError(f"{path}: no data rows found")
    names, scales, n_columns, facts = _parse_header(lines[:first], path)
    found = len(lines[first].rstrip("\t").split("\t"))
    if found != n_columns:
        described = " ".join(names) + (" digital" if facts["digital_column"] else "")
        raise UciFormatError(f"{path}: line {first + 1} has {found} columns, the header "
                             f"describes {n_columns} ({described})")
    data, dropped = _parse_rows(lines, first, n_columns, path)
    fs = facts.pop("sample_rate_hz", SAMPLE_RATE_HZ)
    emg_columns = [names.index(c) for c in EMG_CHANNELS]
    emg = data[:, emg_columns] * np.array([scales[i] for i in emg_columns])
    fx_deg = data[:, names.index("FX")]
    flexion_deg, angle_facts = flexion_from_goniometer(fx_deg, task, fs)
    emg_unit = facts.pop("emg_unit")
    stem = f"{subject}{'N' if group == 'normal' else 'A'}{task}"
    metadata = {
        "dataset": "uci_lower_limb",
        "subject": int(subject),
        "group": group,
        "task": task,
        "task_description": TASKS[task],
        "file": path.name,
        "source_units": {"emg": emg_unit, "angle": "deg"},
        "dropped_trailing_rows": int(dropped),
        "data_sha1": hashlib.sha1(data[:, :n_columns - int(facts["digital_column"])]
                                  .tobytes()).hexdigest(),
        **facts,
        **angle_facts,
    }
    if stem in KNOWN_DUPLICATES:
        metadata["duplicate_of"] = KNOWN_DUPLICATES[stem]
    n = emg.shape[0]
    return Recording(
        emg=emg,
        sample_rate=fs,
        channel_names=list(EMG_CHANNELS),
        joint_name=JOINT_NAME,
        kin_time=np.arange(n) / fs,
        angle=np.deg2rad(flexion_deg),
        metadata=metadata,
    )


def find_uci_files(folder: str | Path) -> list[Path]:
    """Every UCI-named file under ``folder`` (recursively), sorted by group, subject, task."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = [p for p in folder.rglob("*") if p.is_file() and _NAME_RE.match(p.name)]

    def key(p: Path) -> tuple:
        subject, group, task = parse_file_name(p)
        return group, subject, task, p.name

    return sorted(files, key=key)


def load_uci_folder(folder: str | Path, *, groups: tuple[str, ...] = ("normal", "abnormal"),
                    tasks: tuple[str, ...] = tuple(TASKS)) -> list[Recording]:
    """All UCI files under ``folder`` of the given groups and tasks.

    Besides the known duplicates, any file whose data equal an earlier file's gets
    ``metadata["duplicate_of"]`` naming that file.
    """
    recordings, seen = [], {}
    for path in find_uci_files(folder):
        _, group, task = parse_file_name(path)
        if group not in groups or task not in tasks:
            continue
        recording = load_uci_file(path)
        meta = recording.metadata
        first = seen.setdefault(meta["data_sha1"], path.name.split(".")[0])
        if first != path.name.split(".")[0]:
            meta.setdefault("duplicate_of", first)
        recordings.append(recording)
    return recordings
