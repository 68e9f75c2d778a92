"""The state-aided model's motion branch: kernel ridge regression on a compact causal state."""

import numpy as np
import pytest
import torch

from emg_msk_ros.learning.kernel_motion import (FIT_STEPS, GAMMAS, RIDGES, KernelMotion,
                                                _blocks, fit_filters)

pytestmark = pytest.mark.kernels  # fits and compares floats that torch and numpy compute


def test_the_fit_filters_give_a_quadratic_angle_s_velocity_and_acceleration():
    dt = 0.01
    t = dt * np.arange(40)
    angle = 0.3 + 1.5 * t - 2.0 * t ** 2 / 2  # rad; velocity 1.5 - 2 t, acceleration -2
    motion = KernelMotion(n_channels=1, offsets=3, dt=dt)
    state = motion.state(torch.zeros(1, 1, 40), torch.tensor(
        np.stack([angle, np.zeros_like(angle)])[None], dtype=torch.float32))
    newest = t[motion.reach - 1:]
    for i in range(len(FIT_STEPS)):
        np.testing.assert_allclose(state[0, 2 + 2 * i].numpy(), 1.5 - 2.0 * newest, atol=1e-3)
        np.testing.assert_allclose(state[0, 3 + 2 * i].numpy(), -2.0, atol=0.05)
    assert fit_filters(dt).shape == (2 * len(FIT_STEPS), max(FIT_STEPS))


def test_the_state_holds_the_excitation_now_and_lagged():
    motion = KernelMotion(n_channels=2, offsets=1, dt=0.01)
    excitation = torch.arange(40.0).reshape(1, 2, 20)
    state = motion.state(excitation, torch.zeros(1, 2, 20))
    steps = 20 - motion.reach + 1
    assert state.shape == (1, motion.size, steps)
    # channel 0 now (step 19 at the last position) and 5 steps before, then channel 1
    np.testing.assert_array_equal(state[0, -4:, -1].numpy(), [19.0, 39.0, 14.0, 34.0])


def _samples(n, rng, noise, signal=True):
    states = torch.tensor(rng.standard_normal((n, KernelMotion(1, 2, 0.01).size)),
                          dtype=torch.float32)
    z = states.double().numpy()
    clean = 0.01 * np.sin(z[:, 0]) + 0.005 * z[:, 1] * z[:, 2] if signal else np.zeros(n)
    target = np.stack([0.5 * clean, clean], axis=1) + noise * rng.standard_normal((n, 2))
    return states, torch.tensor(target, dtype=torch.float32), clean


def _predict(motion, states):
    return (motion.readout @ motion.features(states.T.unsqueeze(0))[0] + motion.bias).T


def test_the_fit_learns_a_nonlinear_map_and_chooses_its_settings_by_cross_validation():
    rng = np.random.default_rng(0)
    states, targets, _ = _samples(1000, rng, noise=0.001)
    motion = KernelMotion(n_channels=1, offsets=2, dt=0.01)
    fit = motion.fit(states, targets, torch.arange(1000), gap=10)
    assert fit["gamma"] in GAMMAS and fit["ridge"] in RIDGES
    assert fit["cv_rmse_rad"] < 0.3 * fit["cv_constant_velocity_rmse_rad"]
    fresh, _, clean = _samples(500, rng, noise=0.0)
    error = _predict(motion, fresh)[:, 1].double().numpy() - clean
    assert np.sqrt(np.mean(error ** 2)) < 0.3 * np.sqrt(np.mean(clean ** 2))


def test_the_fit_does_not_learn_noise():
    rng = np.random.default_rng(1)
    states, targets, _ = _samples(600, rng, noise=0.01, signal=False)
    motion = KernelMotion(n_channels=1, offsets=2, dt=0.01)
    fit = motion.fit(states, targets, torch.arange(600), gap=10)
    fresh, _, _ = _samples(500, rng, noise=0.0, signal=False)
    # predictions of pure noise stay well inside the noise (0.01 rad)
    assert float(_predict(motion, fresh).abs().mean()) < 0.004
    assert fit["cv_rmse_rad"] < 1.1 * fit["cv_constant_velocity_rmse_rad"]


@pytest.mark.parametrize("gap", [0, 7])
def test_each_fold_leaves_out_its_block_and_the_gap_around_it(gap):
    rows = np.concatenate([np.arange(0, 100), np.arange(200, 260)])
    folds = _blocks(rows, gap)
    held_all = np.sort(np.concatenate([held for held, _ in folds]))
    np.testing.assert_array_equal(held_all, np.arange(len(rows)))
    for held, kept in folds:
        first, last = rows[held].min(), rows[held].max()
        assert np.all((rows[kept] < first - gap) | (rows[kept] > last + gap))
        near = np.abs(rows[:, None] - rows[held][None, :]).min(axis=1) > gap
        assert set(kept) == set(np.flatnonzero(near & ((rows < first) | (rows > last))))


def test_a_state_feature_constant_in_the_data_keeps_its_own_scale():
    rng = np.random.default_rng(2)
    states, targets, _ = _samples(300, rng, noise=0.001)
    states[:, -1] = 0.25  # a silent channel
    motion = KernelMotion(n_channels=1, offsets=2, dt=0.01)
    motion.fit(states, targets, torch.arange(300), gap=10)
    assert float(motion.spread[-1]) == 1.0
    moved = states[:5].clone()
    moved[:, -1] = 0.5  # the channel wakes up: a bounded change of the prediction
    change = _predict(motion, moved) - _predict(motion, states[:5])
    assert torch.isfinite(change).all() and float(change.abs().max()) < 0.05


def _trial(name, n, rng):
    from emg_msk_ros.learning.dataset import Trial

    t = 0.01 * np.arange(n)
    angle = 0.8 + 0.5 * np.sin(1.3 * t + rng.uniform(0, 6))
    measured = np.stack([angle + 0.001 * rng.standard_normal(n),
                         0.65 * np.cos(1.3 * t)], axis=1)
    excitation = rng.uniform(0, 0.3, (n, 2))
    return Trial(name=name, dt=0.01, time=t, excitation=excitation, baseline=np.zeros(2),
                 activation=excitation, angle=angle, force=None, moment=None,
                 joint_state=measured)


def test_the_fitting_samples_are_the_newest_steps_against_constant_velocity():
    from emg_msk_ros.learning.settings import ModelSettings
    from emg_msk_ros.learning.state_data import StateWindowSet
    from emg_msk_ros.learning.state_model import StateAidedPICNN
    from emg_msk_ros.learning.training import motion_samples

    rng = np.random.default_rng(3)
    settings = ModelSettings(hidden=4, kernel=3, levels=3, horizon=4)
    model = StateAidedPICNN(2, 2, settings, ahead=3, dt=0.01)
    first, other = _trial("a", 300, rng), _trial("b", 200, rng)
    window = model.window
    train = StateWindowSet([first], [[(0, 300)]], window, 4, ahead=3, stride=2)
    same = StateWindowSet([first], [[(0, 150)]], window, 4, ahead=3)
    apart = StateWindowSet([other], [[(0, 200)]], window, 4, ahead=3)
    states, targets, rows = motion_samples(model, [train, same, apart])
    assert len(states) == len(train) + len(same) + len(apart)
    ends = train.ends.numpy()
    np.testing.assert_array_equal(rows[:len(train)].numpy(), ends)
    # the true angle at t + h less theta_m(t) + h·dt·omega_m(t)
    js = first.joint_state
    for h in range(4):
        want = first.angle[ends + h] - (js[ends, 0] + 0.01 * h * js[ends, 1])
        np.testing.assert_allclose(targets[:len(train), h].numpy(), want, atol=1e-6)
    # raw state: measured angle and velocity, then fits, then excitation now and 5 steps back
    np.testing.assert_allclose(states[:len(train), 0].numpy(), js[ends, 0], rtol=1e-6)
    np.testing.assert_allclose(states[:len(train), -2:].numpy(),
                               first.excitation[ends - 5], rtol=1e-6)
    # windows over the same session keep its steps; over another session, steps far beyond
    assert set(rows[len(train):len(train) + len(same)].numpy()) <= set(range(300))
    assert rows[len(train) + len(same):].min() > ends.max() + window + 3


def test_the_model_predicts_what_its_fitted_branch_learned():
    from emg_msk_ros.learning.settings import ModelSettings
    from emg_msk_ros.learning.state_data import StateWindowSet
    from emg_msk_ros.learning.state_model import StateAidedPICNN
    from emg_msk_ros.learning.training import fit_motion, motion_samples

    rng = np.random.default_rng(4)
    settings = ModelSettings(hidden=4, kernel=3, levels=3, horizon=4)
    model = StateAidedPICNN(2, 2, settings, ahead=10, dt=0.01).eval()
    trial = _trial("a", 1200, rng)
    data = StateWindowSet([trial], [[(0, 1200)]], model.window, 4, ahead=10, stride=2)
    fit = fit_motion(model, [data])
    # a sinusoid 100 ms ahead: the branch must beat constant velocity by far
    assert fit["kernel"] and fit["cv_rmse_rad"] < 0.3 * fit["cv_constant_velocity_rmse_rad"]
    _, targets, _ = motion_samples(model, [data])
    batch = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        angle, _ = model(*batch.inputs)
    newest = batch.joint[:, :, -1]
    correction = angle[:, :, -1] - (newest[:, :1] + model.lead[:, 0] * newest[:, 1:])
    error = (correction - targets)[:, -1]
    assert float(error.pow(2).mean().sqrt()) < 0.3 * float(targets[:, -1].pow(2).mean().sqrt())
