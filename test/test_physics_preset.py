"""Preset files: the shipped knee and wrist presets, and errors that name the bad field."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import yaml

from emg_msk_ros.paths import config_path
from emg_msk_ros.physics.preset import PresetError, load_preset, parse_preset

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too


def test_knee_preset_matches_the_real_data_channels():
    knee = load_preset("knee")
    assert knee.muscle_names == ("rectus_femoris", "vastus_medialis", "biceps_femoris",
                                 "semitendinosus")
    assert knee.channel_names == ("RF", "VM", "BF", "ST")
    assert knee.opensim_names == ("rect_fem_r", "vasti_r", "bifemsh_r", "hamstrings_r")
    assert knee.joint.name == "knee_angle_r" and knee.joint.coordinate_sign == -1
    lo, hi = knee.joint.range
    assert lo == pytest.approx(0.0) and hi == pytest.approx(2.0944)
    # F0 of gait9dof18musc's vasti_r, copied, and the shank+foot mass (~5.3 kg) from its bodies
    assert knee.muscles.max_isometric_force[1] == pytest.approx(9593.95, rel=1e-5)
    assert 4.5 < knee.joint.mass < 6.0 and 0.3 < knee.joint.inertia < 0.6
    assert abs(knee.joint.hang_angle - np.pi / 2) < 0.2  # seated: the shank hangs near 90 deg
    assert len(knee.sha256) == 64


def test_wrist_preset():
    wrist = load_preset("wrist")
    assert wrist.muscle_names == ("FCR", "FCU", "ECRL", "ECRB", "ECU")
    assert wrist.channel_names == wrist.muscle_names
    assert wrist.joint.name == "flexion" and wrist.joint.coordinate_sign == 1
    assert 0.3 < wrist.joint.mass < 0.8 and wrist.joint.inertia < 5e-3


@pytest.mark.parametrize("name", ["knee", "wrist"])
def test_every_number_in_a_shipped_preset_cites_its_source(name):
    text = config_path(f"presets/{name}.yaml").read_text()
    body = text[text.index("\nschema:"):]
    for line in body.splitlines():
        key, _, value = line.partition(":")
        has_number = re.search(r"(?<![\w.])-?\d", value.split("#")[0])
        if has_number and key.strip() not in ("schema", "source", "model"):
            assert "#" in line, f"{name}.yaml: no source comment on {line.strip()!r}"


def test_load_by_path_and_unknown_name(tmp_path):
    path = config_path("presets/wrist.yaml")
    assert load_preset(path).name == "wrist"
    with pytest.raises(PresetError, match="shipped presets: knee, wrist"):
        load_preset("elbow")


def document():
    return yaml.safe_load(config_path("presets/knee.yaml").read_text())


def change(path, value):
    doc = document()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


BROKEN = [
    (change(["schema"], "v0"), "'schema'"),
    (change(["joint", "inertia"], KeyError), "'joint.inertia': is missing"),
    (change(["joint", "inertia"], -1.0), "'joint.inertia': must be > 0"),
    (change(["joint", "damping"], "lots"), "'joint.damping': must be a finite number"),
    (change(["joint", "range"], [1.0, 0.5]), "'joint.range'"),
    (change(["joint", "coordinate_sign"], 2), "'joint.coordinate_sign'"),
    (change(["joint", "stifness"], 1.0), "'joint.stifness': unknown field"),
    (change(["activation", "model"], "hill"), "'activation.model'"),
    (change(["activation", "shape_factor"], 1.0), "'activation.shape_factor'"),
    (change(["muscles", 2, "tendon_slack_length"], 0), "'muscles[2].tendon_slack_length'"),
    (change(["muscles", 1, "lmt_poly"], "abc"), "'muscles[1].lmt_poly'"),
    (change(["muscles", 1, "lmt_poly"], [-1.0, 0.1]), "'muscles[1].lmt_poly': gives l_MT"),
    (change(["muscles", 3, "channel"], "RF"), "'muscles[0].channel': duplicate"),
    (change(["muscles", 0, "pennation_angle"], 2.0), "'muscles[0].pennation_angle'"),
    (change(["muscles"], []), "'muscles'"),
    (change(["curves", "fv_flen"], 0.9), "'curves.fv_flen'"),
]


@pytest.mark.parametrize("doc,field", BROKEN, ids=[b[1] for b in BROKEN])
def test_malformed_preset_names_the_field(doc, field):
    with pytest.raises(PresetError, match=re.escape(field)):
        parse_preset(doc, "knee.yaml")


def test_malformed_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schema: [unclosed\n")
    with pytest.raises(PresetError, match="bad.yaml: not valid YAML"):
        load_preset(path)
    doc = copy.deepcopy(document())
    doc["muscles"][0]["max_isometric_force"] = None
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(PresetError, match=r"bad\.yaml: field 'muscles\[0\]\.max_isometric_force'"):
        load_preset(path)
