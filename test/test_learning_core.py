"""PI-CNN data, model, loss, training, export and inference on a small synthetic joint.

The toy joint has one flexor and one extensor with constant moment arms; its motion comes from
forward-simulating the preset's own muscles (so the truth satisfies the equation of motion), and
its raw EMG is white noise whose amplitude follows the excitation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
import yaml
from scipy import signal

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.learning import dataset as ds
from emg_msk_ros.learning.export import (
    META_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelError,
    export_onnx,
    read_model_dir,
)
from emg_msk_ros.learning.inference import estimate_offline, load_model
from emg_msk_ros.learning.loss import PhysicsTerms
from emg_msk_ros.learning.metrics import physics_residual, regression, rms
from emg_msk_ros.learning.model import PICNN
from emg_msk_ros.learning.runtime import TensorSpec
from emg_msk_ros.learning.settings import (
    ModelSettings,
    TrainingSettings,
    receptive_field,
    window_length,
)
from emg_msk_ros.learning.train import train_on_recordings
from emg_msk_ros.learning.windows import WindowSet
from emg_msk_ros.physics.forward import simulate_forward
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.simulate import simulate_session
from emg_msk_ros.signal.config import ConditioningSettings

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

TOY = {
    "schema": "emg_msk_ros/preset/1", "name": "toy", "source": "test_learning_core.py",
    "joint": {"name": "toy_joint", "range": [0.0, 1.5], "inertia": 0.2, "damping": 2.0,
              "stiffness": 20.0, "rest_angle": 0.75, "mass": 1.0, "com_distance": 0.1,
              "hang_angle": 0.75},
    "activation": {"model": "first_order", "tau_act": 0.015, "tau_deact": 0.05},
    "muscles": [
        {"name": "flexor", "channel": "F", "max_isometric_force": 300.0,
         "optimal_fiber_length": 0.1, "tendon_slack_length": 0.17, "pennation_angle": 0.1,
         "lmt_poly": [0.30, -0.04]},
        {"name": "extensor", "channel": "E", "max_isometric_force": 300.0,
         "optimal_fiber_length": 0.1, "tendon_slack_length": 0.18, "pennation_angle": 0.0,
         "lmt_poly": [0.25, 0.04]},
    ],
}
EMG_RATE = 1000.0
SIM_RATE = 200.0
# Tiny network: receptive field 15 steps, 4 predicted steps, window 18 steps (0.18 s).
SMALL = TrainingSettings().replace(model=ModelSettings(hidden=16, kernel=3, levels=3, horizon=4))
SMALL = SMALL.replace("optim", max_epochs=20, patience=5, learning_rate=1e-2, threads=1)
SMALL = SMALL.replace("data", min_train_s=5.0).replace("loss", physics_weight=1.0)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "toy.yaml"
    path.write_text(yaml.safe_dump(TOY), encoding="utf-8")
    return load_preset(path)


def toy_recording(preset, duration: float, seed: int, forces: bool = True) -> Recording:
    """Random smooth agonist/antagonist excitation, forward-simulated, with synthetic EMG."""
    rng = np.random.default_rng(seed)
    n = int(duration * SIM_RATE)
    b, a = signal.butter(2, 1.0 / (SIM_RATE / 2))
    drive = signal.lfilter(b, a, rng.standard_normal((n, 2)), axis=0)
    excitation = np.clip(0.2 + 0.25 * drive / drive.std(axis=0), 0.0, 1.0)
    sim = simulate_forward(preset, excitation, 1.0 / SIM_RATE, theta0=0.75)
    t_emg = np.arange(int(duration * EMG_RATE)) / EMG_RATE
    envelope = np.stack([np.interp(t_emg, sim.time, excitation[:, i]) for i in range(2)], 1)
    emg = 5e-4 * envelope * rng.standard_normal(envelope.shape)
    return Recording(
        emg=emg + 5e-6 * rng.standard_normal(emg.shape), sample_rate=EMG_RATE,
        channel_names=["F", "E"], joint_name="toy_joint", kin_time=sim.time, angle=sim.angle,
        velocity=sim.velocity, muscle_names=list(preset.muscle_names),
        force=sim.force if forces else None, moment=sim.moment if forces else None,
        activation=sim.activation, metadata={"preset": "toy", "seed": seed})


@pytest.fixture(scope="module")
def conditioning():
    return ConditioningSettings()


@pytest.fixture(scope="module")
def recording(preset):
    return toy_recording(preset, 40.0, seed=1)


@pytest.fixture(scope="module")
def trained(preset, recording, conditioning):
    return train_on_recordings([recording], ["toy-1"], preset, SMALL, conditioning)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return trained.save(tmp_path_factory.mktemp("models") / "toy")


# --- data --------------------------------------------------------------------------------------

def test_split_by_time_windows_never_straddle_the_split():
    n, window = 2300, 18
    train, val = ds.split_by_time(n, 0.01, val_fraction=0.2, block_s=1.0)
    covered = np.zeros(n, dtype=int)
    for start, stop in train + val:
        covered[start:stop] += 1
    assert np.all(covered == 1)  # the parts tile the trial exactly
    assert sum(b - a for a, b in val) == pytest.approx(0.2 * n, rel=0.15)

    def samples(segments):
        ends = ds.window_ends(segments, window, stride=1)
        return set(np.concatenate([np.arange(e - window + 1, e + 1) for e in ends]).tolist())

    assert not samples(train) & samples(val)
    short_train, short_val = ds.split_by_time(300, 0.01, val_fraction=0.2, block_s=5.0)
    assert short_train == [(0, 240)] and short_val == [(240, 300)]


def test_windows_hold_the_excitation_and_the_labels_of_their_last_steps(preset, recording,
                                                                       conditioning):
    cal = ds.session_calibration(recording, preset, conditioning, "toy-1")
    trial = ds.make_trial(recording, preset, conditioning, cal, "toy-1")
    assert trial.dt == pytest.approx(0.01)
    assert np.all((trial.excitation >= 0) & (trial.excitation <= 1))
    windows = WindowSet([trial], [[(100, 400)]], window=18, horizon=4, stride=3)
    assert int(windows.ends[0]) == 117 and int(windows.ends[-1]) <= 399
    batch = windows.batch(torch.tensor([0, 5]))
    end = int(windows.ends[5])
    np.testing.assert_allclose(batch.x[1].numpy(), trial.inputs[end - 17:end + 1].T,
                               rtol=1e-6)
    # the input is the excitation less the session's resting level
    assert trial.baseline.shape == (2,) and np.all(trial.baseline > 0)
    np.testing.assert_allclose(trial.inputs, np.clip(trial.excitation - trial.baseline, 0, 1))
    assert np.mean(trial.inputs == 0, axis=0) == pytest.approx([0.02, 0.02], abs=0.005)
    np.testing.assert_allclose(batch.angle[1].numpy(), trial.angle[end - 3:end + 1], rtol=1e-6)
    np.testing.assert_allclose(batch.force[1].numpy(), trial.force[end - 3:end + 1].T,
                               rtol=1e-5)
    # the flexor's envelope follows the force it drove in the simulation
    r = np.corrcoef(trial.excitation[50:, 0], trial.force[50:, 0])[0, 1]
    assert r > 0.7


def test_simulated_sessions_remove_their_rest_trial_level(conditioning):
    knee = load_preset("knee")
    recording = simulate_session(knee, 8.0, seed=4)
    cal = ds.session_calibration(recording, knee, conditioning, "seed 4")
    rest = cal.rest_excitation_for(knee.channel_names)
    gains = np.array(recording.metadata["emg_gain"])
    tone = recording.metadata["motion"]["tone"]
    # the relaxed muscle's tone plus the electrode's noise floor, which weighs more on a
    # low-gain electrode (MVC normalisation divides the floor by the gain)
    assert np.all((rest > 0.8 * tone) & (rest < 0.2))
    assert rest[np.argmin(gains)] > rest[np.argmax(gains)]
    trial = ds.make_trial(recording, knee, conditioning, cal, "seed 4")
    np.testing.assert_allclose(trial.baseline, rest)
    own = ds.make_trial(recording, knee, conditioning, dataclasses.replace(cal, rest={}),
                        "seed 4")  # no rest trial: the session's own 2nd percentile
    np.testing.assert_allclose(own.baseline, ds.session_baseline(own.excitation))


def test_sessions_with_wrong_channels_or_joint_are_refused(preset, recording, conditioning):
    renamed = dataclasses.replace(recording, channel_names=["F", "X"])
    with pytest.raises(ds.DataError, match="missing EMG channel.*E.*expected F, E, got F, X"):
        train_on_recordings([renamed], ["bad.bag"], preset, SMALL, conditioning)
    other_joint = dataclasses.replace(recording, joint_name="elbow")
    cal = ds.session_calibration(recording, preset, conditioning, "toy-1")
    with pytest.raises(ds.DataError, match="joint 'elbow'"):
        ds.make_trial(other_joint, preset, conditioning, cal, "elbow.bag")


def test_a_simulated_session_for_other_channels_is_refused_by_name(conditioning):
    wrist = simulate_session(load_preset("wrist"), 3.0, seed=4)
    with pytest.raises(ds.DataError, match="missing EMG channel.*RF, VM, BF, ST"):
        ds.session_calibration(wrist, load_preset("knee"), conditioning, "wrist.bag")


def test_non_finite_labels_or_emg_are_refused_with_where_they_are(preset, recording, conditioning):
    cal = ds.session_calibration(recording, preset, conditioning, "toy-1")
    angle = recording.angle.copy()
    angle[300:310] = np.nan  # a 0.1 s dropout of the joint sensor
    holed = dataclasses.replace(recording, angle=angle)
    t0, t1 = recording.kin_time[300], recording.kin_time[309]
    with pytest.raises(ds.DataError, match=rf"angle labels are NaN/Inf in 10 of \d+ samples, "
                       rf"first from t = {t0:.3f} s to {t1:.3f} s"):
        ds.make_trial(holed, preset, conditioning, cal, "holed.bag")
    with pytest.raises(ds.DataError, match="angle labels are NaN"):
        train_on_recordings([holed], ["holed.bag"], preset, SMALL, conditioning)
    emg = recording.emg.copy()
    emg[:, 1] = np.nan  # an electrode that recorded nothing
    with pytest.raises(ds.DataError, match=rf"EMG channel\(s\) {recording.channel_names[1]} "
                       rf"are NaN/Inf in {len(emg)} of {len(emg)} samples"):
        ds.make_trial(dataclasses.replace(recording, emg=emg), preset, conditioning, cal, "x")


def test_too_little_data_is_refused(preset, conditioning):
    short = toy_recording(preset, 4.0, seed=3)
    with pytest.raises(ds.DataError, match="too little training data"):
        train_on_recordings([short], ["short.bag"], preset, SMALL, conditioning)


# --- model and physics -------------------------------------------------------------------------

def test_model_is_causal_and_shift_consistent():
    settings = ModelSettings(hidden=8, kernel=3, levels=3, horizon=4)
    window = window_length(settings)
    assert window == receptive_field(3, 3) - 1 + 4 == 18
    torch.manual_seed(0)
    model = PICNN(2, 2, settings, force_scale=torch.tensor([10.0, 20.0])).eval()
    x = torch.rand(1, 2, window + 1)
    with torch.no_grad():
        early, late = model(x[..., :-1]), model(x[..., 1:])
        assert early.shape == (1, 3, 4)
        assert torch.all(early[:, 1:] >= 0)
        # the same instants predicted from overlapping windows are identical
        torch.testing.assert_close(early[..., 1:], late[..., :-1])
        bumped = x[..., 1:].clone()
        bumped[..., -1] += 1.0
        changed = model(bumped) - late
    assert torch.all(changed[..., :-1] == 0) and torch.any(changed[..., -1] != 0)
    with pytest.raises(ValueError, match=r"force_scale must have shape \(2,\)"):
        PICNN(2, 2, settings, force_scale=torch.ones(1))


# Tolerance of ONNX Runtime against torch (issue 20): 1e-5 of each output's scale, the angle's
# 1 rad and each muscle's F0; float32 kernels of the two runtimes round differently (~1e-7).
TOLERANCE = 1e-5


def assert_served_equals_torch(served: dict, torch_out: np.ndarray, max_force) -> None:
    """ONNX Runtime's ``angle`` and ``force`` against torch's (N, 1 + M, K) output."""
    np.testing.assert_allclose(served["angle"], torch_out[:, :1], rtol=0, atol=TOLERANCE)
    f0 = np.asarray(max_force, dtype=np.float64)[None, :, None]
    assert np.all(np.abs(served["force"] - torch_out[:, 1:]) <= TOLERANCE * f0)


@pytest.mark.parametrize("kernel, levels", [(3, 3), (5, 4), (2, 6)])
def test_the_onnx_graph_computes_the_network(kernel, levels):
    settings = ModelSettings(hidden=8, kernel=kernel, levels=levels, horizon=5)
    torch.manual_seed(kernel + levels)
    f0 = np.array([300.0, 800.0])
    model = PICNN(3, 2, settings, angle_mean=0.4, angle_scale=0.7,
                  force_scale=torch.as_tensor(0.3 * f0, dtype=torch.float32)).eval()
    exported = export_onnx(model)
    assert exported.inputs == (TensorSpec("excitation", (3, model.window)),)
    assert exported.outputs == (TensorSpec("angle", (1, 5)), TensorSpec("force", (2, 5)))
    served = exported.session("test")
    x = torch.rand(16, 3, model.window, generator=torch.Generator().manual_seed(1)) * 2.0
    with torch.no_grad():
        expected = model(x).numpy()
    out = served.run({"excitation": x.numpy()})
    assert_served_equals_torch(out, expected, f0)
    one = served.run({"excitation": x[:1].numpy()})  # any batch size, the same numbers
    assert_served_equals_torch(one, expected[:1], f0)


def test_physics_residual_is_near_zero_on_truth_and_large_on_corrupted(preset, recording,
                                                                       conditioning):
    cal = ds.session_calibration(recording, preset, conditioning, "toy-1")
    trial = ds.make_trial(recording, preset, conditioning, cal, "toy-1")
    windows = WindowSet([trial], [[(0, len(trial))]], window=18, horizon=6)
    batch = windows.batch(torch.arange(len(windows)))
    terms = PhysicsTerms(preset, trial.dt, SMALL.loss)
    torque = preset.muscle_torque(trial.force, trial.angle)
    scale = float(np.std(torque))
    truth = float(terms.residual(batch.angle, batch.force).pow(2).mean().sqrt())
    rng = torch.Generator().manual_seed(0)
    noisy_angle = batch.angle + 0.002 * torch.randn(batch.angle.shape, generator=rng)
    wrong_force = batch.force * torch.tensor([[1.3], [0.8]])
    assert truth < 0.03 * scale
    assert float(terms.residual(noisy_angle, batch.force).pow(2).mean().sqrt()) > 5 * truth
    assert float(terms.residual(batch.angle, wrong_force).pow(2).mean().sqrt()) > 5 * truth
    # the same on whole trajectories (the metric used for every method)
    assert rms(physics_residual(preset, trial.angle, trial.force, trial.dt)) < 0.03 * scale


def test_hill_term_is_finite_for_predicted_angles_outside_the_joint_range():
    """An untrained network can predict any angle; the Hill term takes the muscle geometry at
    the joint's range limit there (as inference does), instead of overflowing (a real-knee file
    diverged at its first epoch on exactly this)."""
    knee = load_preset("knee")
    terms = PhysicsTerms(knee, 0.01, TrainingSettings().loss)
    low, high = knee.joint.range
    activation = torch.full((2, knee.muscles.count, 5), 0.5)
    beyond = torch.tensor([[low - 1.0] * 5, [high + 1.0] * 5])
    at_limit = torch.tensor([[low] * 5, [high] * 5])
    forces = terms.hill_forces(activation, beyond)
    assert torch.isfinite(forces).all()
    torch.testing.assert_close(forces, terms.hill_forces(activation, at_limit))


def test_regression_metrics():
    truth = np.sin(np.linspace(0, 6, 200))
    perfect = regression(truth, truth)
    assert perfect["rmse"] == 0 and perfect["r2"] == 1 and perfect["r"] == pytest.approx(1)
    shifted = regression(truth + 0.1, truth)
    assert shifted["rmse"] == pytest.approx(0.1)
    assert shifted["nrmse"] == pytest.approx(0.1 / np.ptp(truth))
    assert shifted["r"] == pytest.approx(1) and shifted["r2"] < 1


# --- training ------------------------------------------------------------------------------------

def test_tiny_training_run_learns_the_mapping(trained):
    history = trained.result.history
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]
    assert trained.result.best_val_loss < 0.5 * history[0]["val_loss"]
    val = trained.meta["metrics"]["validation"]
    assert val["angle"]["r"] > 0.9
    assert all(m["r"] > 0.8 for m in val["force"].values())
    assert trained.meta["training"]["mode"] == "forces supervised"


def test_training_is_deterministic_for_a_seed(preset, recording, conditioning):
    quick = SMALL.replace("optim", max_epochs=2)
    first = train_on_recordings([recording], ["toy-1"], preset, quick, conditioning)
    second = train_on_recordings([recording], ["toy-1"], preset, quick, conditioning)
    for a, b in zip(first.result.model.state_dict().values(),
                    second.result.model.state_dict().values()):
        assert torch.equal(a, b)
    assert first.meta["training"]["data_hash"] == second.meta["training"]["data_hash"]


def test_true_activation_diagnostic_swaps_the_input_and_is_never_saved(preset, recording,
                                                                      conditioning, tmp_path):
    cal = ds.session_calibration(recording, preset, conditioning, "toy-1")
    trial = ds.make_trial(recording, preset, conditioning, cal, "toy-1")
    true = ds.true_activation_trial(trial, recording, preset)
    expected = np.stack([np.interp(trial.time, recording.kin_time, recording.activation[:, i])
                         for i in range(2)], axis=1)
    np.testing.assert_allclose(true.excitation, expected)
    np.testing.assert_array_equal(true.baseline, [0.0, 0.0])
    np.testing.assert_allclose(true.inputs, expected)
    assert not np.allclose(true.excitation, trial.excitation, atol=0.01)  # EMG was replaced
    np.testing.assert_array_equal(true.angle, trial.angle)  # labels untouched
    with pytest.raises(ds.DataError, match="no true activations"):
        ds.true_activation_trial(trial, dataclasses.replace(recording, activation=None), preset)

    quick = SMALL.replace("optim", max_epochs=3)
    diagnostic = train_on_recordings([recording], ["toy-1"], preset, quick, conditioning,
                                     true_activation=True)
    assert diagnostic.meta["training"]["inputs"] == "true activations"
    with pytest.raises(ds.DataError, match="diagnostic and is not saved"):
        diagnostic.save(tmp_path / "diagnostic")
    assert not (tmp_path / "diagnostic").exists()
    # it was trained on the activations: the resting baseline it keeps is theirs, not the EMG's
    assert diagnostic.meta["normalisation"]["excitation_baseline"] == pytest.approx(
        list(true.baseline))


def test_unlabelled_forces_mode_learns_bounded_parameters(preset, conditioning):
    angle_only = toy_recording(preset, 20.0, seed=2, forces=False)
    quick = SMALL.replace("optim", max_epochs=3)
    trained = train_on_recordings([angle_only], ["angle-only"], preset, quick, conditioning)
    assert trained.meta["training"]["mode"] == "forces unlabelled"
    learned = trained.meta["physics"]["learned"]
    assert set(learned) == {"strength", "fiber_length", "tendon_slack"}
    assert all(0.5 <= g <= 2.5 for g in learned["strength"])
    assert all(0.8 <= s <= 1.2 for s in learned["fiber_length"] + learned["tendon_slack"])
    assert any(g != 1.0 for g in learned["strength"])  # the Hill term moved them
    assert "force" in trained.result.history[-1]["val_terms"] or "hill" in (
        trained.result.history[-1]["val_terms"])
    assert "force" not in trained.result.history[-1]["val_terms"]


# --- export and inference ------------------------------------------------------------------------

def test_exported_model_gives_the_in_memory_outputs(trained, saved, preset, recording,
                                                    conditioning):
    loaded = load_model(saved)
    assert loaded.channel_names == ["F", "E"] and loaded.muscle_names == ["flexor", "extensor"]
    assert loaded.window == 18 and loaded.model_rate == 100.0 and loaded.sample_rate == 1000.0
    trial = ds.make_trial(recording, loaded.preset, loaded.conditioner_settings,
                          loaded.calibration, "toy-1")
    offline = estimate_offline(loaded, trial.excitation, trial.baseline)
    in_memory = estimate_offline(trained.estimator, trial.excitation, trial.baseline)
    for key in offline:
        np.testing.assert_allclose(offline[key], in_memory[key], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the eager network, before scripting
        x = torch.as_tensor(trial.inputs[:18].T[None], dtype=torch.float32)
        eager = trained.result.model(x)[0, 0, -1].item()
    assert offline["angle"][0] == pytest.approx(eager, abs=1e-5)
    # the freshly trained network: ONNX Runtime (model.onnx) equals torch (model.pt)
    windows = np.lib.stride_tricks.sliding_window_view(trial.inputs, 18, axis=0)[::7]
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    with torch.no_grad():
        scripted = read_model_dir(saved).module(torch.from_numpy(windows)).numpy()
    assert_served_equals_torch(loaded.run({"excitation": windows}), scripted,
                               loaded.preset.muscles.max_isometric_force)
    meta = yaml.safe_load((saved / META_FILE).read_text())
    assert meta["onnx"]["file"] == ONNX_FILE and meta["onnx"]["opset"] == 17
    assert [t["name"] for t in meta["onnx"]["outputs"]] == ["angle", "force"]
    # predict() on one window equals the offline estimate for that window's last sample
    loaded.baseline = trial.baseline
    for j in (0, 137):
        est = loaded.predict(trial.excitation[j:j + 18])
        assert offline["index"][j] == j + 17
        assert est.angle == pytest.approx(offline["angle"][j], abs=1e-6)
        np.testing.assert_allclose(est.force, offline["force"][j], rtol=1e-6)
        np.testing.assert_allclose(est.moment, preset.moment_arms(est.angle) * est.force)
        assert est.net_moment == pytest.approx(est.moment.sum())
        assert np.all((est.activation >= 0) & (est.activation <= 1))
        # worked out when first read (after the joint is published), as the offline run has it
        np.testing.assert_allclose(est.activation, offline["activation"][j], rtol=1e-6,
                                   atol=1e-7)
    with pytest.raises(ValueError, match="baseline must hold 2 finite values"):
        loaded.baseline = [0.1]
    empty = estimate_offline(loaded, trial.excitation[:17])
    assert len(empty["index"]) == 0 and empty["force"].shape == (0, 2)


def test_loading_refuses_other_channels_and_broken_files(saved, tmp_path):
    loaded = load_model(saved)
    with pytest.raises(ModelError, match=r"expects EMG channels \['F', 'E'\].*got \['E', 'F'\]"):
        loaded.check_channels(["E", "F"])
    loaded.check_channels(["F", "E"])

    def copy(name):
        target = tmp_path / name
        target.mkdir()
        for f in (META_FILE, WEIGHTS_FILE, ONNX_FILE):
            (target / f).write_bytes((saved / f).read_bytes())
        return target

    for file, section in ((WEIGHTS_FILE, "weights"), (ONNX_FILE, "onnx")):
        data = (saved / file).read_bytes()
        truncated = copy(f"truncated-{section}")
        (truncated / file).write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelError, match=rf"{file}: truncated.*'{section}\.bytes'"):
            (load_model if section == "onnx" else read_model_dir)(truncated)
        corrupt = copy(f"corrupt-{section}")
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF
        (corrupt / file).write_bytes(bytes(flipped))
        with pytest.raises(ModelError, match=rf"{file}: corrupt.*'{section}\.sha256'"):
            (load_model if section == "onnx" else read_model_dir)(corrupt)

    meta = yaml.safe_load((saved / META_FILE).read_text())
    for name, change, pattern in (
            ("schema", {"schema": "emg_msk_ros/model/0"}, "schema version mismatch"),
            ("window", {"window": 30}, "field 'window'"),
            ("channels", {"channel_names": ["F", "X"]}, "field 'channel_names'"),
            ("rate", {"model_rate": "fast"}, "field 'model_rate': must be float")):
        broken = copy(name)
        (broken / META_FILE).write_text(yaml.safe_dump({**meta, **change}))
        with pytest.raises(ModelError, match=pattern):
            read_model_dir(broken)
    missing = copy("missing")
    (missing / META_FILE).write_text(yaml.safe_dump(
        {k: v for k, v in meta.items() if k != "calibration"}))
    with pytest.raises(ModelError, match="field 'calibration': is missing"):
        read_model_dir(missing)
    with pytest.raises(ModelError, match="nowhere: no such model folder"):
        load_model(tmp_path / "nowhere")
    no_weights = copy("no_weights")
    (no_weights / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match=r"model\.pt: missing.*'weights\.file'"):
        read_model_dir(no_weights)
    load_model(no_weights)  # serving needs model.onnx, not the training checkpoint


def refuse_onnx(folder, data: bytes, section: dict, pattern: str) -> None:
    """Write ``data`` as the folder's model.onnx and ``section`` as its model.yaml section
    (the checksums made to fit), and check that loading is refused with ``pattern``."""
    meta = yaml.safe_load((folder / META_FILE).read_text())
    meta["onnx"] = {**section, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    (folder / ONNX_FILE).write_bytes(data)
    with pytest.raises(ModelError, match=pattern):
        load_model(folder)


def test_a_mismatched_or_broken_model_onnx_is_refused_by_name(saved, tmp_path):
    meta = yaml.safe_load((saved / META_FILE).read_text())
    folder = tmp_path / "model"
    folder.mkdir()
    for f in (META_FILE, WEIGHTS_FILE, ONNX_FILE):
        (folder / f).write_bytes((saved / f).read_bytes())
    own = meta["onnx"]
    refuse_onnx(folder, b"not an onnx graph", own, r"model\.onnx: not a loadable ONNX model")
    # another model's graph (3 channels) under this model's section: the graph differs
    other = export_onnx(PICNN(3, 2, ModelSettings(hidden=8, kernel=3, levels=3, horizon=4)))
    refuse_onnx(folder, other.data, own,
                r"model\.onnx: the graph's inputs .*differ from model\.yaml field 'onnx\.inputs'")
    # ... with its own section: graph and section agree, but not with this model's channels
    refuse_onnx(folder, other.data, other.section(),
                r"model\.yaml: field 'onnx\.inputs': .*model\.onnx has .*need")
    # a section that is not a list of named shapes
    refuse_onnx(folder, (saved / ONNX_FILE).read_bytes(), {**own, "outputs": [{"name": "angle"}]},
                r"field 'onnx\.outputs': each entry must be")
    refuse_onnx(folder, (saved / ONNX_FILE).read_bytes(), {**own, "opset": 0},
                r"field 'onnx\.opset': must be > 0")
    (folder / META_FILE).write_bytes((saved / META_FILE).read_bytes())
    (folder / ONNX_FILE).unlink()
    with pytest.raises(ModelError, match=rf"model\.onnx: missing .*'onnx\.file'.*"
                                         rf"emg-msk export {folder}"):
        load_model(folder)
    (folder / ONNX_FILE).write_bytes((saved / ONNX_FILE).read_bytes())  # restored: it loads
    assert load_model(folder).network.outputs[1].name == "force"


def test_an_old_model_folder_is_refused_with_the_command_that_updates_it(saved, tmp_path,
                                                                        capsys):
    from emg_msk_ros.cli import main

    old = tmp_path / "old"
    old.mkdir()
    (old / WEIGHTS_FILE).write_bytes((saved / WEIGHTS_FILE).read_bytes())
    meta = yaml.safe_load((saved / META_FILE).read_text())
    del meta["onnx"]  # as emg-msk train wrote it before serving moved to ONNX Runtime
    (old / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.raises(ModelError, match=rf"field 'onnx': is missing.*emg-msk export {old}"):
        load_model(old)
    assert main(["export", str(old)]) == 0
    assert f"wrote {old / ONNX_FILE}" in capsys.readouterr().out
    updated = yaml.safe_load((old / META_FILE).read_text())
    assert updated["onnx"]["sha256"] == meta_sha(old / ONNX_FILE)
    assert {k: v for k, v in updated.items() if k != "onnx"} == meta  # nothing else changed
    assert list(updated).index("onnx") == list(updated).index("weights") + 1
    rng = np.random.default_rng(3)
    envelope = rng.uniform(0.0, 0.4, (40, 2))
    fresh, exported = load_model(saved), load_model(old)
    for key, value in estimate_offline(fresh, envelope).items():
        np.testing.assert_array_equal(estimate_offline(exported, envelope)[key], value)
    # a folder whose model.pt is missing cannot be exported, and says why
    (old / WEIGHTS_FILE).unlink()
    assert main(["export", str(old)]) == 2
    assert "model.pt: missing" in capsys.readouterr().err


def meta_sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- command line --------------------------------------------------------------------------------

def test_train_and_evaluate_commands_on_session_bags(preset, recording, tmp_path, capsys):
    from emg_msk_ros.cli import main
    from emg_msk_ros.io.session_bag import write_recording

    train_bag = write_recording(tmp_path / "train", recording)
    test_bag = write_recording(tmp_path / "test", toy_recording(preset, 12.0, seed=7))
    config = tmp_path / "training.yaml"
    settings = SMALL.replace("optim", max_epochs=4).to_mapping()
    config.write_text(yaml.safe_dump({"schema": "emg_msk_ros/training/1", "training": settings}))
    model = tmp_path / "model"
    code = main(["train", "--data", str(train_bag), "--out", str(model), "--preset",
                 str(preset.path), "--config", str(config), "--seed", "3", "--no-progress"])
    assert code == 0
    meta = yaml.safe_load((model / META_FILE).read_text())
    assert meta["training"]["seed"] == 3
    assert meta["training"]["command"].startswith(f"emg-msk train --data {train_bag} --out ")
    assert "--seed 3" in meta["training"]["command"]
    capsys.readouterr()
    plots = tmp_path / "plots"
    code = main(["evaluate", "--model", str(model), "--data", str(test_bag), "--recalibrate",
                 "--plots", str(plots), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    metrics = report["metrics"]
    assert metrics["angle"]["r"] > 0.5
    assert set(metrics["force"]) == {"flexor", "extensor"} and "moment" in metrics
    assert metrics["physics_residual_rms"] > 0
    assert sorted(p.name for p in plots.iterdir()) == ["angle.png", "forces.png", "moment.png"]
    # a session with other channels and an existing output folder are refused with a reason
    other = write_recording(tmp_path / "other",
                            dataclasses.replace(recording, channel_names=["A", "B"]))
    assert main(["evaluate", "--model", str(model), "--data", str(other)]) == 2
    assert "missing EMG channel(s) F, E" in capsys.readouterr().err
    assert main(["train", "--data", str(train_bag), "--out", str(model), "--preset",
                 str(preset.path), "--no-progress"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_training_settings_are_validated(tmp_path):
    from emg_msk_ros.learning.settings import load_training_settings
    from emg_msk_ros.signal.config import ConfigError

    assert load_training_settings() == TrainingSettings()  # config/training.yaml = defaults
    path = tmp_path / "training.yaml"
    for training, pattern in (
            ({"loss": {"physic_weight": 1.0}}, r"training\.loss: unknown.*physic_weight"),
            ({"model": {"horizon": 2}}, r"training\.model\.horizon must be in 3\.\.100"),
            ({"optim": {"batch_size": "big"}}, r"training\.optim\.batch_size must be an integer")):
        path.write_text(yaml.safe_dump({"schema": "emg_msk_ros/training/1", "training": training}))
        with pytest.raises(ConfigError, match=pattern):
            load_training_settings(path)
