"""The UCI lower-limb loader reads every header layout of the release (``emg_msk_ros.io.uci``).

The release's three headers (normal group; pathology subjects 1-8; pathology subjects 9-11 with
a digital event column) are in ``test/data/uci_lower_limb`` as excerpts of real files (see its
SOURCE.md). The single-spelling tests edit one header line of such an excerpt at a time.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import pytest

from emg_msk_ros.io.uci import EMG_CHANNELS, UciFormatError, load_uci_file

UCI = Path(__file__).resolve().parent / "data" / "uci_lower_limb"
EXCERPT = UCI / "A_TXT" / "2Asen_excerpt.txt.gz"  # header of pathology subjects 1-8


@functools.cache
def _text(path: Path) -> str:
    with gzip.open(path, "rb") as stream:
        return stream.read().decode("latin-1")


def _rows(text: str) -> np.ndarray:
    """The data rows of a file's text as floats, all columns."""
    lines = [line for line in text.replace("\r", "").split("\n") if line.strip()]
    data = [line for line in lines if line[0] in "-0123456789"]
    return np.array([[float(v) for v in line.split("\t")] for line in data])


def _edited(tmp_path: Path, name: str, header_edit=list, row_edit=None) -> Path:
    """The first 2 s of ``EXCERPT`` with its header lines (and optionally each data row)
    rewritten; with neither edit, the reference the edited files are compared with."""
    text = _text(EXCERPT).replace("\r", "")
    header, body = text.split("\n\n", 1)
    rows = body.split("\n")[:2000]
    if row_edit:
        rows = [row_edit(row) for row in rows]
    path = tmp_path / name
    with gzip.open(path, "wt", encoding="latin-1", newline="") as stream:
        stream.write("\r\n".join(header_edit(header.split("\n")) + [""] + rows) + "\r\n")
    return path


@pytest.mark.parametrize("file, names, digital", [
    ("N_TXT/3Nsen.txt.gz", ["RF", "BF", "VM", "ST", "FX"], False),
    ("A_TXT/2Asen_excerpt.txt.gz",
     ["Recto Femoral", "Biceps Femoral", "Vasto Medial", "EMG Semitendinoso", "Flexo-Extension"],
     False),
    ("A_TXT/3Asen_9A-11A_header.txt.gz",
     ["Recto femoral", "Biceps Femoral", "Vasto Medial", "Semitendinoso", "Flexo"], True),
])
def test_each_header_layout_of_the_release_loads(file, names, digital):
    path = UCI / file
    recording = load_uci_file(path)
    meta = recording.metadata
    assert meta["header_names"] == dict(zip([*EMG_CHANNELS, "FX"], names))
    assert meta["digital_column"] is digital
    raw = _rows(_text(path))
    assert raw.shape[1] == 5 + digital
    assert recording.channel_names == list(EMG_CHANNELS)
    # columns in the order of the channel lines, mV -> V; the value read back is the text's
    np.testing.assert_allclose(recording.emg, raw[:, :4] * 1e-3, rtol=1e-12)
    assert recording.emg.shape[0] == raw.shape[0]
    flexion = np.rad2deg(recording.angle)
    # seated at 90 deg over the first 0.2 s, the rest window of the angle rule (sen)
    assert np.median(flexion[:200]) == pytest.approx(90.0, abs=0.5)
    assert flexion.min() < 45.0  # and the knee extends
    assert "angle_warning" not in meta


SPELLINGS = [
    ("RF", "'Recto femoral'"), ("RF", "'RECTO FEMORAL'"), ("RF", "'Rectus femoris'"),
    ("RF", "'EMG Recto Femoral'"), ("ST", "'Semitendinoso'"), ("ST", "'EMG Semitendinoso'"),
    ("ST", "'semitendinosus'"), ("FX", "'Flexo'"), ("FX", "'Flexo-Extension'"),
    ("FX", "'Flexo-Extensión'"), ("FX", "'Flexo Extension'"), ("FX", "'FX'"),
    ("VM", "'Vasto Interno'"), ("BF", "'Biceps femoris'"),
]
RELEASE_NAMES = {"RF": "'Recto Femoral'", "BF": "'Biceps Femoral'", "VM": "'Vasto Medial'",
                 "ST": "'EMG Semitendinoso'", "FX": "'Flexo-Extension'"}


@pytest.mark.parametrize("channel, spelling", SPELLINGS)
def test_each_channel_spelling_maps_to_its_column(tmp_path, channel, spelling):
    old = RELEASE_NAMES[channel]
    path = _edited(tmp_path, "2Asen.txt.gz",
                   lambda lines: [line.replace(old, spelling) for line in lines])
    recording = load_uci_file(path)
    assert recording.metadata["header_names"][channel] == spelling.strip("'")
    reference = load_uci_file(_edited(tmp_path, "2Asen_reference.txt.gz"))
    np.testing.assert_array_equal(recording.emg, reference.emg)  # same text, same parse
    np.testing.assert_array_equal(recording.angle, reference.angle)


def _renumbered(first: int):
    def edit(lines):
        out, k = [], first
        for line in lines:
            if line.startswith("Channel "):
                line = f"Channel {k}:" + line.split(":", 1)[1]
                k += 1
            out.append(line)
        return out
    return edit


@pytest.mark.parametrize("first", [1, 4])
def test_channel_numbers_are_not_column_indices(tmp_path, first):
    recording = load_uci_file(_edited(tmp_path, "2Asen.txt.gz", _renumbered(first)))
    reference = load_uci_file(_edited(tmp_path, "2Asen_reference.txt.gz"))
    np.testing.assert_array_equal(recording.emg, reference.emg)


def test_columns_follow_the_order_of_the_channel_lines(tmp_path):
    """A header listing FX first and ST before RF, with the data in that order, reads the same
    recording: columns are found by name."""
    order = [4, 3, 1, 2, 0]  # FX, ST, BF, VM, RF

    def header(lines):
        channels = [line for line in lines if line.startswith("Channel ")]
        return [lines[0], *[channels[i] for i in order]]

    def row(line):
        fields = line.split("\t")
        return "\t".join(fields[i] for i in order)

    recording = load_uci_file(_edited(tmp_path, "2Asen.txt.gz", header, row))
    reference = load_uci_file(_edited(tmp_path, "2Asen_reference.txt.gz"))
    np.testing.assert_array_equal(recording.emg, reference.emg)
    np.testing.assert_array_equal(recording.angle, reference.angle)


def test_what_cannot_be_mapped_is_refused_by_name(tmp_path):
    def rename(old, new):
        return lambda lines: [line.replace(old, new) for line in lines]

    unknown = _edited(tmp_path, "2Asen.txt.gz", rename("'Vasto Medial'", "'Gastrocnemio'"))
    with pytest.raises(UciFormatError, match=r"unknown channel name 'Gastrocnemio'.*VM: vm"):
        load_uci_file(unknown)
    twice = _edited(tmp_path, "3Asen.txt.gz", rename("'Vasto Medial'", "'RF'"))
    with pytest.raises(UciFormatError,
                       match="two header channels are RF: 'Recto Femoral' and 'RF'"):
        load_uci_file(twice)
    missing = _edited(tmp_path, "4Asen.txt.gz",
                      lambda lines: [line for line in lines if "Semitendinoso" not in line],
                      lambda line: "\t".join(line.split("\t")[:3] + line.split("\t")[4:]))
    with pytest.raises(UciFormatError, match="header lacks channel.s. ST"):
        load_uci_file(missing)
    undescribed = _edited(tmp_path, "5Asen.txt.gz", row_edit=lambda line: line + "\t31")
    with pytest.raises(UciFormatError,
                       match=r"line 8 has 6 columns, the header describes 5 \(RF BF VM ST FX\)"):
        load_uci_file(undescribed)
    no_column = _edited(tmp_path, "6Asen.txt.gz",
                        lambda lines: lines + ["Digitals combined (event=16): 2000 values, ."])
    with pytest.raises(UciFormatError, match=r"has 5 columns, the header describes 6 \("
                                             r"RF BF VM ST FX digital\)"):
        load_uci_file(no_column)
