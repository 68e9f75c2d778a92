"""OpenSim import: the shipped presets reproduce OpenSim's geometry within 1 mm.

Needs the optional ``opensim`` package (``pip install opensim==4.6``; CI installs it). The
models are copied in ``test/data/models`` (see SOURCE.md there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

from emg_msk_ros.physics import osim_import
from emg_msk_ros.physics.preset import load_preset

MODELS = Path(__file__).resolve().parent / "data" / "models"


def test_fit_recovers_a_polynomial_and_its_derivative():
    theta = np.linspace(-1.0, 2.0, 61)
    coef = np.array([0.3, -0.02, 0.004, 0.001])
    lengths = np.polynomial.polynomial.polyval(theta, coef)
    arms = -np.polynomial.polynomial.polyval(theta, coef[1:] * np.arange(1, 4))
    fitted, err_l, err_r = osim_import.fit_polynomial(theta, lengths, arms, degree=3)
    np.testing.assert_allclose(fitted, coef, atol=1e-12)
    assert err_l < 1e-12 and err_r < 1e-12
    auto, *_ = osim_import.fit_polynomial(theta, lengths, arms)
    assert len(auto) == 4  # the smallest degree within tolerance


@pytest.fixture(scope="module")
def opensim_models():
    """The copied .osim files; the tests using them need the opensim package (set-up
    installs it), imported the way the importer does so the environment stays intact."""
    osim_import._opensim()
    return MODELS


@pytest.mark.parametrize("name", ["knee", "wrist"])
def test_shipped_preset_reproduces_opensim_within_1_mm(name, opensim_models):
    preset = load_preset(name)
    source = preset.opensim
    sign = preset.joint.coordinate_sign
    lo, hi = preset.joint.range
    q_range = tuple(sorted((sign * lo, sign * hi)))
    sample = osim_import.sample_model(opensim_models / source["model"], source["coordinate"],
                                      list(preset.opensim_names), sign, source["posture"],
                                      q_range, samples=37)
    arms = np.stack([m.arms for m in sample.muscles], 1)
    lengths = np.stack([m.lengths for m in sample.muscles], 1)
    assert np.max(np.abs(preset.moment_arms(sample.theta) - arms)) < 1e-3
    assert np.max(np.abs(preset.lmt(sample.theta) - lengths)) < 1e-3
    for i, muscle in enumerate(sample.muscles):
        assert preset.muscles.max_isometric_force[i] == pytest.approx(
            muscle.params["max_isometric_force"], rel=1e-5)
        assert preset.muscles.tendon_slack_length[i] == pytest.approx(
            muscle.params["tendon_slack_length"], rel=1e-5)
    assert preset.joint.inertia == pytest.approx(sample.inertia, rel=1e-3)
    assert preset.joint.mass == pytest.approx(sample.mass, rel=1e-4)
    assert preset.joint.hang_angle == pytest.approx(sample.hang_angle, abs=0.01)


def import_args(tmp_path, muscles="FCR,ECRB", **extra):
    parser = argparse.ArgumentParser()
    osim_import.configure(parser)
    model = tmp_path.parent / "model.osim"
    argv = [str(extra.pop("model", model)), "--coordinate", "flexion", "--muscles", muscles,
            "--posture", "elbow_flexion=1.5708,pro_sup=1.5708", "--samples", "31",
            "--out", str(tmp_path / "mini.yaml")]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return parser.parse_args(argv)


def test_cli_writes_a_loadable_preset_and_reports_errors(tmp_path, opensim_models, capsys):
    model = opensim_models / "MoBL_ARMS_J_Simple_032118.osim"
    args = import_args(tmp_path, model=model, names="flexor,extensor", channels="F,E")
    assert osim_import.run(args) == 0
    preset = load_preset(tmp_path / "mini.yaml")
    assert preset.name == "mini" and preset.channel_names == ("F", "E")
    assert preset.opensim_names == ("FCR", "ECRB")
    assert "import-osim" in preset.source and "--posture=" in preset.source
    assert preset.moment_arms(np.array(0.0))[0] > 0 > preset.moment_arms(np.array(0.0))[1]
    assert osim_import.run(import_args(tmp_path, model=model, muscles="FCR,NOPE")) == 1
    assert "NOPE" in capsys.readouterr().err
    assert osim_import.run(import_args(tmp_path, model=tmp_path / "missing.osim")) == 1
    assert "missing.osim" in capsys.readouterr().err


def test_without_opensim_the_command_says_what_to_install_and_exits_2(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setitem(sys.modules, "opensim", None)  # import opensim now fails
    args = import_args(tmp_path, model=MODELS / "MoBL_ARMS_J_Simple_032118.osim")
    assert osim_import.run(args) == 2
    assert "pip install opensim==4.6" in capsys.readouterr().err
