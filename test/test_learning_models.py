"""The default models shipped in models/: they load, describe how they were made, and run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_msk_ros.learning.export import read_model_dir
from emg_msk_ros.learning.inference import ModelError, estimate_offline, load_model
from emg_msk_ros.paths import models_dir
from emg_msk_ros.physics.preset import load_preset

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too


@pytest.mark.parametrize("preset_name", ["knee", "wrist"])
def test_default_model_loads_and_records_how_it_was_made(preset_name):
    folder = models_dir() / preset_name
    assert sum(f.stat().st_size for f in folder.iterdir()) < 1_000_000
    estimator = load_model(folder)
    preset = load_preset(preset_name)
    assert estimator.channel_names == list(preset.channel_names)
    assert estimator.muscle_names == list(preset.muscle_names)
    assert estimator.joint_name == preset.joint.name
    assert estimator.meta["preset"]["sha256"] == preset.sha256  # trained on the shipped preset
    training = estimator.meta["training"]
    assert training["command"].startswith("emg-msk train --data ")
    assert isinstance(training["seed"], int) and len(training["data_hash"]) == 64
    assert all("seed" in s["metadata"] for s in training["sessions"])  # sessions reproducible
    assert 1e4 <= estimator.meta["architecture"]["parameters"] < 1e5
    with pytest.raises(ModelError, match="expects EMG channels"):
        estimator.check_channels(list(reversed(estimator.channel_names)))

    rng = np.random.default_rng(0)
    envelope = rng.uniform(0.0, 0.3, (estimator.window + 20, len(estimator.channel_names)))
    offline = estimate_offline(estimator, envelope)
    assert len(offline["index"]) == 21 and offline["index"][0] == estimator.window - 1
    lo, hi = preset.joint.range
    margin = 0.5 * (hi - lo)
    assert np.all((offline["angle"] > lo - margin) & (offline["angle"] < hi + margin))
    assert np.all(offline["force"] >= 0)
    last = estimator.predict(envelope[-estimator.window:])
    assert last.angle == pytest.approx(offline["angle"][-1], abs=1e-6)
    np.testing.assert_allclose(last.force, offline["force"][-1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("preset_name", ["knee", "wrist"])
def test_default_model_served_by_onnx_runtime_equals_its_torch_checkpoint(preset_name):
    """model.onnx (served) against model.pt (TorchScript, the training checkpoint) within 1e-5
    of each output's scale: 1 rad for the angle, each muscle's F0 for its force (float32
    kernels of the two runtimes round differently, by about 1e-7 relative)."""
    folder = models_dir() / preset_name
    served = load_model(folder)
    checkpoint = read_model_dir(folder).module
    rng = np.random.default_rng(1)
    shape = (len(served.channel_names), served.window)
    # excitation-like windows, and a few at the input's extremes (0 and 1 everywhere)
    windows = np.concatenate([rng.uniform(0.0, 0.6, (62, *shape)), np.zeros((1, *shape)),
                              np.ones((1, *shape))]).astype(np.float32)
    out = served.run({"excitation": windows})
    with torch.inference_mode():
        expected = checkpoint(torch.from_numpy(windows)).numpy()
    assert np.abs(out["angle"] - expected[:, :1]).max() <= 1e-5
    f0 = np.asarray(served.preset.muscles.max_isometric_force)[None, :, None]
    assert np.all(np.abs(out["force"] - expected[:, 1:]) <= 1e-5 * f0)
