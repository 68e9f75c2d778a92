"""Data-set loaders (UCI lower limb, elderly isometric, generic CSV) and ``emg-msk import``."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import yaml

from emg_msk_ros.cli import main as cli_main
from emg_msk_ros.io.csv_loader import CsvColumnMap, CsvFormatError, load_csv
from emg_msk_ros.io.elderly import load_elderly_subject
from emg_msk_ros.io.session_bag import read_recording
from emg_msk_ros.io.uci import (
    UciFormatError,
    find_uci_files,
    flexion_from_goniometer,
    load_uci_file,
    load_uci_folder,
)
from emg_msk_ros.paths import config_path
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.signal import (
    Conditioner,
    ConditioningSettings,
    compute_calibration,
    condition_recording,
)
from emg_msk_ros.signal.config import ConfigError, NormalisationSettings, NotchSettings


@pytest.fixture
def uci(test_data):
    return test_data / "uci_lower_limb"


def _sen_files(uci):
    return [p for p in find_uci_files(uci) if p.name.endswith("Nsen.txt.gz")]


def test_every_test_file_loads(uci):
    files = find_uci_files(uci)
    assert [p.name for p in files] == [
        "1Apie_digital.txt.gz", "2Asen_excerpt.txt.gz", "3Asen_9A-11A_header.txt.gz",
        "1Nmar.txt.gz", *[f"{i}Nsen.txt.gz" for i in range(1, 7)]]
    for recording in load_uci_folder(uci):
        meta = recording.metadata
        assert recording.channel_names == ["RF", "BF", "VM", "ST"]
        assert recording.joint_name == load_preset("knee").joint.name  # the preset's knee
        assert recording.sample_rate == 1000.0
        assert 1e-6 < np.abs(recording.emg).max() < 0.01  # volts, not mV
        assert recording.angle.shape == (recording.emg.shape[0],)
        assert meta["group"] in ("normal", "abnormal") and meta["task"] in ("sen", "pie", "mar")
        assert {"subject", "file", "task_description"} <= set(meta)


def test_sen_flexion_starts_seated_and_moves_toward_extension(uci):
    for path in _sen_files(uci):
        recording = load_uci_file(path)
        degrees = np.rad2deg(recording.angle)
        assert degrees[0] == pytest.approx(90.0, abs=3.0), path.name
        assert degrees.min() < 45.0 and degrees.max() < 125.0, path.name
        assert "angle_warning" not in recording.metadata


@pytest.mark.kernels
@pytest.mark.parametrize("name", [f"{i}Nsen.txt.gz" for i in range(1, 7)])
def test_quadriceps_envelope_follows_knee_extension(uci, name):
    """Each seated knee-extension file of the normal subjects: the quadriceps (RF, VM)
    excitation rises as the knee extends. Default chain, 60 Hz mains (Colombia)."""
    recording = load_uci_file(uci / "N_TXT" / name)
    settings = ConditioningSettings().replace(notch=NotchSettings(frequency_hz=60.0))
    calibration = compute_calibration(recording.emg, recording.sample_rate,
                                      recording.channel_names, settings)
    excitation, time = condition_recording(recording, settings, calibration)
    flexion = np.interp(time, recording.kin_time, recording.angle)
    quadriceps = excitation[:, [0, 2]].mean(axis=1)
    assert np.corrcoef(quadriceps, -flexion)[0, 1] > 0.5


@pytest.mark.kernels
def test_real_recordings_raise_no_quality_flags(uci, test_data):
    """Negative control for the flat/saturation thresholds: none of the real test recordings
    (quiet rest included) has a flat or saturated window."""
    settings = ConditioningSettings().replace(normalisation=NormalisationSettings(mode="running"))
    trials = load_elderly_subject(test_data / "elderly_emg_dynamometry" / "subject01.csv.gz")
    recordings = load_uci_folder(uci) + [trial.recording for trial in trials.values()]
    for recording in recordings:
        conditioner = Conditioner(settings, recording.sample_rate, recording.channel_names)
        conditioner.process(recording.emg, 0)
        assert conditioner.quality.windows > 20
        assert conditioner.quality.summary() == [], recording.metadata["file"]


def test_spanish_names_and_digital_column(uci):
    recording = load_uci_file(uci / "A_TXT" / "1Apie_digital.txt.gz")
    meta = recording.metadata
    assert meta["digital_column"] is True
    assert (meta["subject"], meta["group"], meta["task"]) == (1, "abnormal", "pie")
    assert recording.emg.shape == (11403, 4)  # the header's value count
    np.testing.assert_allclose(recording.emg[0], [0.0, 0.0052e-3, 0.0007e-3, -0.003e-3])
    assert np.rad2deg(recording.angle).max() > 60  # standing knee flexion, toward flexion


def test_trailing_short_rows_are_dropped(uci):
    recording = load_uci_file(uci / "N_TXT" / "1Nmar.txt.gz")
    assert recording.emg.shape == (5681, 4)  # "5681 values" in the header
    assert recording.metadata["dropped_trailing_rows"] == 19
    assert recording.metadata["angle_source_rate_hz"] == 50.0


def test_duplicates_are_marked(uci, tmp_path):
    assert load_uci_file(uci / "N_TXT" / "2Nsen.txt.gz").metadata["duplicate_of"] == "1Nsen"
    assert "duplicate_of" not in load_uci_file(uci / "N_TXT" / "1Nsen.txt.gz").metadata
    shutil.copy(uci / "N_TXT" / "3Nsen.txt.gz", tmp_path / "3Nsen.txt.gz")
    shutil.copy(uci / "N_TXT" / "3Nsen.txt.gz", tmp_path / "9Nsen.txt.gz")
    loaded = {r.metadata["file"]: r.metadata for r in load_uci_folder(tmp_path)}
    assert loaded["9Nsen.txt.gz"]["duplicate_of"] == "3Nsen"
    assert "duplicate_of" not in loaded["3Nsen.txt.gz"]


def _write(path, text):
    with gzip.open(path, "wt", encoding="latin-1") as stream:
        stream.write(text)
    return path


HEADER = ("File Name: x.log\r\n"
          + "".join(f"Channel {i + 1}: '{n}', 4 values, engineering units: {u}, no filters.\r\n"
                    for i, (n, u) in enumerate([("RF", "mV"), ("BF", "mV"), ("VM", "mV"),
                                                ("ST", "mV"), ("FX", "deg")]))
          + "\r\n")


def test_short_row_inside_the_data_is_an_error(tmp_path):
    rows = "0.1\t0.2\t0.3\t0.4\t10\r\n0.1\t0.2\t0.3\r\n0.1\t0.2\t0.3\t0.4\t11\r\n"
    path = _write(tmp_path / "1Nsen.txt.gz", HEADER + rows)
    with pytest.raises(UciFormatError, match="1Nsen.txt.gz: bad data row"):
        load_uci_file(path)


def test_unknown_channel_and_unknown_name_are_errors(tmp_path):
    path = _write(tmp_path / "1Nsen.txt.gz", HEADER.replace("'ST'", "'Gastrocnemio'")
                  + "0.1\t0.2\t0.3\t0.4\t10\r\n")
    with pytest.raises(UciFormatError, match="unknown channel name 'Gastrocnemio'"):
        load_uci_file(path)
    odd = _write(tmp_path / "session_a.txt.gz", HEADER + "0.1\t0.2\t0.3\t0.4\t10\r\n")
    with pytest.raises(UciFormatError, match="pass subject, group and task"):
        load_uci_file(odd)
    recording = load_uci_file(odd, subject=7, group="normal", task="pie")
    assert recording.metadata["subject"] == 7 and recording.emg[0, 3] == pytest.approx(0.4e-3)


def test_goniometer_rule_is_sign_and_offset_invariant():
    """A mirrored, shifted goniometer gives the same flexion: the rule uses only the task."""
    t = np.linspace(0, 10, 10000)
    lift = np.clip(np.sin(2 * np.pi * 0.3 * (t - 1.0)), 0, None) * (t > 1.0)
    flexion = 90 - 70 * lift  # seated at rest for 1 s, then extends the knee
    for sign, offset in [(1, 0), (-1, 0), (-1, -170), (1, -25)]:
        got, facts = flexion_from_goniometer(sign * flexion + offset, "sen", 1000.0)
        np.testing.assert_allclose(got, flexion, atol=1e-9)
        assert facts["fx_sign"] == sign


def test_gait_rule_rests_at_the_extended_end_of_the_stride(uci):
    """Gait files start mid-stride: flexion is measured from the stride's extended end."""
    t = np.arange(0, 6, 0.001)
    phase = (t + 0.8) % 1.0  # starts in swing
    stance = 12 * np.sin(np.pi * np.clip(phase / 0.6, 0, 1))
    swing = 60 * np.sin(np.pi * np.clip((phase - 0.6) / 0.4, 0, 1))
    flexion = np.where(phase < 0.6, stance, swing)
    expected = flexion - np.percentile(flexion, 2.0)
    for sign, offset in [(1, 0), (-1, 0), (-1, -30), (1, 25)]:
        got, facts = flexion_from_goniometer(sign * flexion + offset, "mar", 1000.0)
        np.testing.assert_allclose(got, expected, atol=1e-9)
        assert facts["fx_sign"] == sign and "angle_warning" not in facts
    real = np.rad2deg(load_uci_file(uci / "N_TXT" / "1Nmar.txt.gz").angle)
    assert -5.0 < real.min() and 20.0 < real.max() < 90.0  # read from its start: -27..35 deg


def test_elderly_subject_loads(test_data):
    trials = load_elderly_subject(test_data / "elderly_emg_dynamometry" / "subject01.csv.gz")
    assert list(trials) == ["VL", "BF", "TA", "GL"]
    for task, trial in trials.items():
        recording = trial.recording
        assert recording.emg.shape == (20001, 4) and recording.sample_rate == 2000.0
        assert recording.channel_names == ["VL", "BF", "TA", "GL"]
        assert 1e-6 < recording.emg.std() < 1e-3  # µV converted to V
        assert recording.angle is None and trial.force_kgf.shape == (20001,)
        assert recording.metadata["task"] == task and recording.metadata["age_years"] == 74.0
    # tibialis anterior works in dorsiflexion (TA task), not in the seated knee tasks
    rms = {task: np.sqrt(np.mean(trial.recording.emg[:, 2] ** 2))
           for task, trial in trials.items()}
    assert rms["TA"] > 1.5 * max(rms["VL"], rms["BF"])


CSV_MAP = {"emg": {"RF": "rf_mv", "VM": "vm_mv"}, "emg_unit": "mV", "time_column": "t_ms",
           "time_unit": "ms", "angle_column": "knee", "angle_unit": "deg", "angle_sign": -1}


def _csv(tmp_path, step_ms=0.5):
    lines = ["t_ms,rf_mv,vm_mv,knee,unused"]
    lines += [f"{100 + i * step_ms},{0.01 * i},{-0.02 * i},{-i},7" for i in range(50)]
    path = tmp_path / "trial.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_loader_with_column_map(tmp_path):
    recording = load_csv(_csv(tmp_path), CSV_MAP)
    assert recording.channel_names == ["RF", "VM"]
    assert recording.sample_rate == pytest.approx(2000.0)
    assert recording.start_time == pytest.approx(0.1)
    np.testing.assert_allclose(recording.emg[10], [0.1e-3, -0.2e-3])
    np.testing.assert_allclose(recording.angle[10], np.deg2rad(10.0))


def test_csv_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(CsvFormatError, match="no column 'missing' .for EMG channel VM."):
        load_csv(_csv(tmp_path), {**CSV_MAP, "emg": {"VM": "missing"}})
    uneven = _csv(tmp_path)
    uneven.write_text(uneven.read_text().replace("\n100.5,", "\n100.9,"))
    with pytest.raises(CsvFormatError, match="not uniformly sampled"):
        load_csv(uneven, CSV_MAP)
    blank = _csv(tmp_path)
    rows = blank.read_text().splitlines()
    blank.write_text("\n".join([rows[0]] + [",".join(r.split(",")[:3] + ["nan", "7"])
                                             for r in rows[1:]]) + "\n")
    with pytest.raises(CsvFormatError, match="column 'knee' .for angle. holds no finite number"):
        load_csv(blank, CSV_MAP)
    with pytest.raises(ConfigError, match="unknown option.s. emg_units"):
        CsvColumnMap.from_mapping({**CSV_MAP, "emg_units": "mV"})
    with pytest.raises(ConfigError, match="exactly one of sample_rate_hz and time_column"):
        CsvColumnMap.from_mapping({"emg": {"RF": "rf_mv"}})


def test_import_uci_writes_a_session(uci, tmp_path, capsys):
    out = tmp_path / "session"
    source = uci / "N_TXT" / "1Nmar.txt.gz"
    assert cli_main(["import", "uci", str(source), "--out", str(out)]) == 0
    assert "5681 samples x 4 channels (RF, BF, VM, ST) at 1000 Hz" in capsys.readouterr().out
    session = read_recording(out)
    original = load_uci_file(source)
    assert session.channel_names == original.channel_names
    np.testing.assert_allclose(session.emg, original.emg, rtol=1e-6, atol=1e-12)  # float32
    np.testing.assert_allclose(session.angle, original.angle, atol=1e-6)
    assert session.metadata["task"] == "mar" and session.metadata["dropped_trailing_rows"] == 19
    assert cli_main(["import", "uci", str(source), "--out", str(out)]) == 2  # exists
    assert "exists" in capsys.readouterr().err


def test_import_records_the_preset_train_will_use(uci, tmp_path, capsys, monkeypatch):
    source = uci / "N_TXT" / "1Nmar.txt.gz"
    assert cli_main(["import", "uci", str(source), "--out", str(tmp_path / "uci")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(", preset knee")
    assert read_recording(tmp_path / "uci").metadata["preset"] == "knee"  # the data set's
    path, column_map = _csv(tmp_path), tmp_path / "map.yaml"
    column_map.write_text("emg: {RF: rf_mv}\nemg_unit: mV\nsample_rate_hz: 2000\n")
    csv = ["import", "csv", str(path), "--map", str(column_map)]
    assert cli_main([*csv, "--out", str(tmp_path / "csv")]) == 0
    assert "preset" not in read_recording(tmp_path / "csv").metadata  # a csv's is unknown
    assert cli_main([*csv, "--out", str(tmp_path / "knee"), "--preset", "knee"]) == 2
    assert "no channel VM, BF, ST of preset 'knee' (it has RF)" in capsys.readouterr().err
    assert cli_main([*csv, "--out", str(tmp_path / "nosuch"), "--preset", "nosuch"]) == 2
    assert "preset 'nosuch': no file" in capsys.readouterr().err
    one = yaml.safe_load(config_path("presets/knee.yaml").read_text())
    one["muscles"] = [m for m in one["muscles"] if m["channel"] == "RF"]
    (tmp_path / "rf.yaml").write_text(yaml.safe_dump(one))
    monkeypatch.chdir(tmp_path)  # a relative path is recorded absolute
    assert cli_main([*csv, "--out", str(tmp_path / "rf"), "--preset", "rf.yaml"]) == 0
    recorded = read_recording(tmp_path / "rf").metadata["preset"]
    assert recorded == str(tmp_path / "rf.yaml") and load_preset(recorded).channel_names == ("RF",)


def test_import_csv_needs_a_map(tmp_path, capsys):
    path = _csv(tmp_path)
    assert cli_main(["import", "csv", str(path), "--out", str(tmp_path / "s")]) == 2
    assert "needs --map" in capsys.readouterr().err
    column_map = tmp_path / "map.yaml"
    column_map.write_text("emg: {RF: rf_mv}\nemg_unit: mV\nsample_rate_hz: 2000\n")
    assert cli_main(["import", "csv", str(path), "--map", str(column_map),
                     "--out", str(tmp_path / "s")]) == 0
    assert read_recording(tmp_path / "s").emg.shape == (50, 1)
