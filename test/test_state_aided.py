"""The state-aided PI-CNN without ROS: joint-state alignment, the model, loading, offline use,
serving with ONNX Runtime (against torch; ``emg-msk export``), ``emg-msk evaluate``'s ahead
metrics and the refusal of a path without joint states."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

import yaml

import numpy as np
import pytest
import torch

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.session_bag import read_recording, write_recording
from emg_msk_ros.learning import dataset as ds
from emg_msk_ros.learning import evaluate, train
from emg_msk_ros.learning.export import read_model_dir
from emg_msk_ros.learning.inference import ModelError, estimate_offline, load_model
from emg_msk_ros.learning.joint_input import hold_at, measured_state
from emg_msk_ros.learning.metadata import META_FILE, ONNX_FILE, WEIGHTS_FILE, ahead_steps
from emg_msk_ros.learning.runtime import TensorSpec
from emg_msk_ros.learning.settings import ModelSettings, load_training_settings
from emg_msk_ros.learning.state_inference import StateAidedEstimator
from emg_msk_ros.learning.loss import PhysicsTerms, Scales
from emg_msk_ros.learning.state_data import StateBatch
from emg_msk_ros.learning.state_loss import StateLoss, future_trajectory
from emg_msk_ros.learning.state_model import StateAidedPICNN
from emg_msk_ros.paths import models_dir
from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.signal.config import load_settings

pytestmark = pytest.mark.kernels  # trains, compares torch with ONNX Runtime: float results


def test_hold_at_takes_the_newest_reading_at_or_before_each_time():
    stamps = np.array([0.0, 0.002, 0.004, 0.006])
    values = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    held, age = hold_at(stamps, values, np.array([-0.001, 0.0, 0.0039, 0.004, 0.01]))
    assert np.isnan(held[0]).all() and age[0] == np.inf
    np.testing.assert_array_equal(held[1:, 0], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(age[1:], [0.0, 0.0019, 0.0, 0.004], atol=1e-12)


def test_trial_joint_state_is_the_encoder_reading_at_each_emg_step(state_aided_session):
    rec = state_aided_session
    preset, conditioning = load_preset("knee"), load_settings()
    calibration = ds.session_calibration(rec, preset, conditioning, "s")
    trial = ds.make_trial(rec, preset, conditioning, calibration, "s", joint_state=True)
    stamps = rec.measured_time
    for k in (0, 7, len(trial) // 2, len(trial) - 1):
        newest = np.flatnonzero(stamps <= trial.time[k] + 1e-9)[-1]
        assert trial.joint_state[k, 0] == rec.measured_angle[newest]
        assert trial.joint_state[k, 1] == rec.measured_velocity[newest]
    # the measurement is the encoder's, not the truth: quantised to its resolution
    resolution = rec.metadata["encoder"]["resolution"]
    steps = trial.joint_state[:, 0] / resolution
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    assert not np.allclose(trial.joint_state[:, 0], trial.angle, atol=1e-6)
    # and the labels stay the truth
    np.testing.assert_allclose(trial.angle, np.interp(trial.time, rec.kin_time, rec.angle))


def test_a_goniometer_recording_is_its_own_sensor_with_a_differentiated_velocity():
    t = np.arange(2000) / 1000.0
    angle = 0.5 * np.sin(2 * np.pi * 0.5 * t)
    rec = Recording(emg=np.zeros((2000, 1)), sample_rate=1000.0, channel_names=["a"],
                    kin_time=t, angle=angle)
    stamps, measured, velocity = measured_state(rec)
    np.testing.assert_array_equal(measured, angle)
    truth = 0.5 * np.pi * np.cos(2 * np.pi * 0.5 * t)
    # one-pole 40 Hz low-pass of the difference: a few ms of lag at 1.6 rad/s peak
    assert np.max(np.abs(velocity[200:] - truth[200:])) < 0.05


def test_a_session_bag_keeps_the_encoder_and_the_truth_apart(tmp_path, state_aided_session):
    back = read_recording(write_recording(tmp_path / "s", state_aided_session))
    np.testing.assert_allclose(back.angle, state_aided_session.angle, rtol=1e-12)
    np.testing.assert_allclose(back.measured_angle, state_aided_session.measured_angle,
                               rtol=1e-12)
    # a bag without the truth topic (real data, older sessions) reads joint_states as labels
    old = dataclasses.replace(state_aided_session, measured_time=None, measured_angle=None,
                              measured_velocity=None)
    back = read_recording(write_recording(tmp_path / "old", old))
    assert back.measured_time is None
    np.testing.assert_allclose(back.angle, old.angle, rtol=1e-12)


def test_horizons_must_be_whole_model_steps():
    assert [ahead_steps(ms, 100.0) for ms in (0, 50, 100, 200)] == [0, 5, 10, 20]
    with pytest.raises(ValueError, match="whole number"):
        ahead_steps(15, 100.0)


def test_the_network_is_causal_and_corrects_constant_velocity_extrapolation():
    settings = ModelSettings(hidden=8, kernel=3, levels=4, horizon=4)  # receptive field 31
    torch.manual_seed(0)
    net = StateAidedPICNN(2, 3, settings, ahead=5, dt=0.01).eval()
    reach = net.motion.reach
    assert reach == 12 < net.window - 4
    with torch.no_grad():  # a motion branch as a fit leaves it: every weight in use
        net.motion.readout.normal_()
        net.motion.spread.fill_(0.3)
    w = net.window
    x, state = torch.rand(1, 2, w), torch.rand(1, 2, w)
    angle, force = net(x, state)
    assert angle.shape == (1, 6, 4) and force.shape == (1, 3, 6, 4)
    assert (force >= 0).all()
    later_x, later_state = x.clone(), state.clone()
    later_x[..., -1] += 1.0
    later_state[..., -1] += 1.0
    again, again_force = net(later_x, later_state)
    # outputs before the last step do not see the changed last sample
    torch.testing.assert_close(again[..., :-1], angle[..., :-1])
    torch.testing.assert_close(again_force[..., :-1], force[..., :-1])
    # the angle reads the last `reach` steps of joint state and excitation, the forces more
    older_x, older_state = x.clone(), state.clone()
    older_x[..., :w - 4 - reach + 1] = torch.rand(1, 2, w - 4 - reach + 1)
    older_state[..., :w - 4 - reach + 1] = torch.rand(1, 2, w - 4 - reach + 1)
    torch.testing.assert_close(net(older_x, older_state)[0], angle)
    assert not torch.allclose(net(older_x, older_state)[1], force)
    # ... and the excitation inside them
    other_x = x.clone()
    other_x[..., -1] += 1.0
    assert not torch.allclose(net(other_x, state)[0][..., -1], angle[..., -1])
    # an empty motion branch leaves constant-velocity extrapolation
    with torch.no_grad():
        net.motion.readout.zero_()
    flat, _ = net(x, state)
    lead = 0.01 * torch.arange(6.0).reshape(6, 1)
    torch.testing.assert_close(flat[0], state[0, 0, -4:] + lead * state[0, 1, -4:])


def test_the_future_trajectory_joins_measured_past_and_predicted_future():
    measured = torch.tensor([[0.0, 1.0, 2.0]])  # (B=1, K=3)
    angle = torch.arange(9.0).reshape(1, 3, 3) + 10  # (B, H+1=3, K)
    force = torch.arange(18.0).reshape(1, 2, 3, 3)  # (B, M=2, H+1, K)
    angles, forces = future_trajectory(measured, angle, force)
    # from step 1: theta_m(0), theta_m(1), then theta^(1 + 1), theta^(1 + 2)
    np.testing.assert_array_equal(angles[0], [0.0, 1.0, angle[0, 1, 1], angle[0, 2, 1]])
    np.testing.assert_array_equal(forces[0, 0], [force[0, 0, 0, 0], *force[0, 0, :, 1]])
    assert angles.shape == (2, 4) and forces.shape == (2, 2, 4)


def test_the_force_labels_supervise_the_forces_now_only():
    preset = load_preset("knee")
    m, h, k, w = len(preset.muscle_names), 3, 4, 8
    settings = load_training_settings().loss
    scales = Scales(angle_mean=1.0, angle=0.3, force=np.full(m, 100.0), moment=10.0, torque=5.0)
    loss = StateLoss(PhysicsTerms(preset, 0.01, settings), scales, 0.01, settings,
                     physics=True, forces_labelled=True)
    gen = torch.Generator().manual_seed(0)
    batch = StateBatch(x=torch.rand(2, m, w, generator=gen),
                       joint=torch.stack([torch.full((2, w), 1.0), torch.zeros(2, w)], dim=1),
                       angle=torch.full((2, h + 1, k), 1.0),
                       activation=torch.rand(2, m, k, generator=gen),
                       force=100 * torch.rand(2, m, k, generator=gen),
                       moment=torch.zeros(2, h + 1, k))
    force = 100 * torch.rand(2, m, h + 1, k, generator=gen)
    angle = torch.full((2, h + 1, k), 1.0)
    _, terms = loss((angle, force), batch)
    ahead = force.clone()
    ahead[:, :, 1:] += 50.0  # the forces ahead: the force term ignores them, physics does not
    _, terms_ahead = loss((angle, ahead), batch)
    assert terms_ahead["force"] == pytest.approx(terms["force"], rel=1e-6)
    assert terms_ahead["physics"] != pytest.approx(terms["physics"], rel=1e-3)
    now = force.clone()
    now[:, :, 0] += 50.0
    _, terms_now = loss((angle, now), batch)
    assert terms_now["force"] > terms["force"] + 0.1


def test_a_state_aided_model_loads_and_records_its_kind(state_aided_model):
    estimator = load_model(state_aided_model)
    assert isinstance(estimator, StateAidedEstimator) and estimator.needs_joint_state
    assert estimator.meta["kind"] == "state_aided"
    ahead = dict(estimator.meta["ahead"])
    branch = ahead.pop("motion_branch")
    assert ahead == {"steps": 10, "horizon_ms": 100.0}
    assert set(branch) == {"kernel", "gamma", "ridge", "cv_rmse_deg",
                           "cv_constant_velocity_rmse_deg"}
    # the branch corrects constant velocity only where that cross-validates better
    assert branch["kernel"] == (branch["cv_rmse_deg"] < branch["cv_constant_velocity_rmse_deg"])
    assert estimator.meta["joint_state_input"]["rows"] == ["angle", "velocity"]
    assert estimator.horizon_s == pytest.approx(0.1)
    # trained with the state-aided settings (the fixture sets state_aided_max_epochs=1 and
    # leaves max_epochs at the EMG-only model's 40)
    assert estimator.meta["training"]["epochs"] == 1


def test_the_state_aided_settings_replace_the_emg_only_ones():
    settings = load_training_settings().replace("optim", max_epochs=7, patience=3,
                                                state_aided_max_epochs=11,
                                                state_aided_patience=5)
    settings = settings.replace("loss", hill_weight=0.0, state_aided_hill_weight=0.4,
                                moment_weight=1.5, state_aided_moment_weight=2.5)
    state = settings.state_aided()
    assert (state.optim.max_epochs, state.optim.patience, state.loss.hill_weight,
            state.loss.moment_weight) == (11, 5, 0.4, 2.5)
    assert (settings.optim.max_epochs, settings.loss.hill_weight,
            settings.loss.moment_weight) == (7, 0.0, 1.5)


def test_train_options_reach_the_state_aided_settings():
    parser = argparse.ArgumentParser()
    train.configure(parser)
    args = parser.parse_args(["--data", "s", "--out", "m", "--inputs", "emg+state",
                              "--hill-weight", "0.7", "--epochs", "9"])
    state = train._settings_from_args(args).state_aided()
    assert (state.loss.hill_weight, state.optim.max_epochs) == (0.7, 9)


def test_a_state_aided_model_refuses_a_path_without_joint_states(state_aided_model):
    estimator = load_model(state_aided_model)
    window = np.zeros((estimator.window, len(estimator.channel_names)), dtype=np.float32)
    with pytest.raises(ModelError, match="state-aided"):
        estimate_offline(estimator, np.zeros((100, 4), dtype=np.float32))
    with pytest.raises(ModelError, match="joint states"):
        estimator.predict(window)


def test_live_predictions_equal_the_offline_run(state_aided_model, state_aided_session):
    estimator = load_model(state_aided_model)
    preset, conditioning = estimator.preset, estimator.conditioner_settings
    calibration = ds.session_calibration(state_aided_session, preset, conditioning, "s")
    trial = ds.make_trial(state_aided_session, preset, conditioning, calibration, "s",
                          joint_state=True)
    env, state = trial.excitation[:200], trial.joint_state[:200]
    offline = estimate_offline(estimator, env, None, state)
    w = estimator.window
    for j in (0, 17, len(offline["index"]) - 1):
        live = estimator.predict(env[j:j + w], state[j:j + w])
        # same module, same arithmetic; float32 sums may differ by batch size
        assert live.angle_ahead == pytest.approx(offline["angle_ahead"][j], abs=1e-5)
        assert live.angle == pytest.approx(offline["angle"][j], abs=1e-5)
        np.testing.assert_allclose(live.force, offline["force"][j], rtol=1e-4, atol=1e-3)
        assert live.net_moment == pytest.approx(offline["net_moment"][j], rel=1e-4, abs=1e-3)
        # activation = (F - F_passive) / gain, gain >> 1 N: within the forces' atol
        np.testing.assert_allclose(live.activation, offline["activation"][j], atol=1e-3)


def served_inputs(estimator, count: int, seed: int) -> dict[str, np.ndarray]:
    """Windows of the graph's inputs: excitation in [0, 0.6) (plus one all 0 and one all 1) and
    the joint state of a knee swinging at 0.3-2 Hz inside its range (angle rad, velocity
    rad/s, consistent with each other)."""
    rng = np.random.default_rng(seed)
    shape = (len(estimator.channel_names), estimator.window)
    excitation = np.concatenate([rng.uniform(0.0, 0.6, (count - 2, *shape)),
                                 np.zeros((1, *shape)), np.ones((1, *shape))])
    lo, hi = estimator.preset.joint.range
    t = np.arange(estimator.window) * estimator.dt
    freq = 2 * np.pi * rng.uniform(0.3, 2.0, (count, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (count, 1))
    mid, amplitude = (lo + hi) / 2, 0.4 * (hi - lo)
    state = np.stack([mid + amplitude * np.sin(freq * t + phase),
                      amplitude * freq * np.cos(freq * t + phase)], axis=1)
    return {"excitation": excitation.astype(np.float32), "joint_state": state.astype(np.float32)}


# ONNX Runtime against torch (issue 20's tolerance): 1e-5 of each output's scale, as float32
# kernels of the two runtimes round differently (~1e-7 relative): 1 rad for angles, each
# muscle's F0 for its force, the largest moment the muscles make at F0 (sum of F0·max|r| over
# the range) for the net moment, and for the velocity ahead the angle's 1 rad through its
# backward difference ((3 + 4 + 1) / (2 dt) rad/s per rad of every angle's error).
TOLERANCE = 1e-5


@pytest.mark.parametrize("which", ["default", "fresh"])
def test_onnx_runtime_serves_what_torch_computes(which, request):
    folder = (models_dir() / "knee-state" if which == "default"
              else request.getfixturevalue("state_aided_model"))
    served = load_model(folder)
    m, h, k = len(served.muscle_names), served.ahead + 1, served.horizon
    assert served.network.outputs == (TensorSpec("angle", (h, k)),
                                      TensorSpec("force", (m, h, k)))
    feeds = served_inputs(served, 48, seed=5)
    out = served.run(feeds)
    with torch.inference_mode():
        angle, force = read_model_dir(folder).module(*map(torch.from_numpy, feeds.values()))
    f0 = np.asarray(served.muscles.max_isometric_force)
    assert np.abs(out["angle"] - angle.numpy()).max() <= TOLERANCE  # rad
    assert np.all(np.abs(out["force"] - force.numpy()) <= TOLERANCE * f0[:, None, None])
    # what the node publishes from them: the same consumer code on either runtime's outputs
    velocity = feeds["joint_state"][:, 1, -1]
    mine = served.finish(out, velocity)
    theirs = served.finish({"angle": angle.numpy(), "force": force.numpy()}, velocity)
    lo, hi = served.preset.joint.range
    _, arms = hill.geometry(served.muscles, np.linspace(lo, hi, 50))
    moment_scale = float(np.sum(f0 * np.abs(arms).max(axis=0)))  # N·m
    assert np.abs(mine["net_moment"] - theirs["net_moment"]).max() <= TOLERANCE * moment_scale
    assert np.abs(mine["angle_ahead"] - theirs["angle_ahead"]).max() <= TOLERANCE
    assert (np.abs(mine["velocity_ahead"] - theirs["velocity_ahead"]).max()
            <= TOLERANCE * 4.0 / served.dt)


def test_export_adds_the_onnx_graph_to_a_state_aided_folder(state_aided_model, tmp_path,
                                                           capsys):
    from emg_msk_ros.cli import main

    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(state_aided_model / WEIGHTS_FILE, old)
    meta = yaml.safe_load((state_aided_model / META_FILE).read_text())
    del meta["onnx"]  # as the state-aided kind was written before it was served by ONNX
    (old / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.raises(ModelError, match=f"emg-msk export {old}"):
        load_model(old)
    assert main(["export", str(old)]) == 0
    assert "joint_state (2, 70)" in capsys.readouterr().out
    exported, fresh = load_model(old), load_model(state_aided_model)
    assert isinstance(exported, StateAidedEstimator)
    feeds = served_inputs(fresh, 8, seed=6)
    for name, value in fresh.run(feeds).items():
        np.testing.assert_allclose(exported.run(feeds)[name], value, rtol=0, atol=1e-6)
    # the architecture named in model.yaml must be the kind's network
    meta["architecture"]["type"] = "causal dilated 1-D CNN (emg_msk_ros.learning.model.PICNN)"
    (old / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    (old / ONNX_FILE).unlink()
    assert main(["export", str(old)]) == 2
    assert "does not name emg_msk_ros.learning.state_model.StateAidedPICNN" in \
        capsys.readouterr().err


def test_an_emg_only_graph_in_a_state_aided_folder_is_refused(state_aided_model, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(state_aided_model, folder)
    meta = yaml.safe_load((folder / META_FILE).read_text())
    meta["onnx"] = yaml.safe_load((models_dir() / "knee" / META_FILE).read_text())["onnx"]
    (folder / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    shutil.copy(models_dir() / "knee" / ONNX_FILE, folder)
    with pytest.raises(ModelError, match=r"field 'onnx\.inputs'.*joint_state"):
        load_model(folder)


def test_evaluate_reports_the_angle_ahead_beside_constant_velocity(
        tmp_path, capsys, state_aided_model, state_aided_session):
    bag = write_recording(tmp_path / "session", state_aided_session)
    args = argparse.ArgumentParser()
    evaluate.configure(args)
    code = evaluate.run(args.parse_args(["--model", str(state_aided_model), "--data", str(bag),
                                         "--plots", str(tmp_path / "plots"), "--json"]))
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    ahead = metrics["angle_ahead"]
    assert ahead["horizon_ms"] == pytest.approx(100.0)
    assert ahead["rmse_deg"] > 0 and ahead["constant_velocity_rmse_deg"] > 0
    assert "force_nrmse_mean" in metrics and "moment" in metrics
    code = evaluate.run(args.parse_args(["--model", str(state_aided_model), "--data", str(bag),
                                         "--plots", str(tmp_path / "plots2")]))
    out = capsys.readouterr().out
    assert code == 0 and "100 ms ahead" in out and "constant-velocity" in out


def test_train_refuses_a_horizon_for_the_emg_only_model(tmp_path, capsys):
    from emg_msk_ros.learning import train

    parser = argparse.ArgumentParser()
    train.configure(parser)
    args = parser.parse_args(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "m"),
                              "--horizon-ms", "100"])
    assert train.run(args) == 2
    assert "--horizon-ms needs --inputs emg+state" in capsys.readouterr().err


def test_training_refuses_a_horizon_between_model_steps(state_aided_session):
    from emg_msk_ros.learning.train import train_on_recordings

    with pytest.raises(ds.DataError, match="whole number"):
        train_on_recordings([state_aided_session], ["s"], load_preset("knee"),
                            load_training_settings(), load_settings(), horizon_ms=25.0)


def test_with_nothing_to_train_the_data_only_model_keeps_its_solved_motion_branch(
        state_aided_session):
    # a recording's goniometer and EMG, no force or moment labels, no physics terms: the loss
    # has only the angle, which the motion branch solved before training
    from emg_msk_ros.learning.train import train_on_recordings

    unlabelled = dataclasses.replace(state_aided_session, force=None, moment=None,
                                     activation=None, excitation=None)
    settings = load_training_settings().replace("data", min_train_s=1.0, stride=4)
    trained = train_on_recordings([unlabelled], ["s3"], load_preset("knee"), settings,
                                  load_settings(), horizon_ms=100.0, physics=False)
    assert trained.result.stop_reason.startswith("nothing to train")
    assert len(trained.result.history) == 1
    assert "motion_branch" in trained.meta["ahead"]
