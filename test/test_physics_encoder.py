"""The simulated joint sensor: its grid, its rate, its noise and its differentiated velocity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emg_msk_ros.physics.encoder import EncoderSettings, JointEncoder, measure_trajectory

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too


def test_readings_sit_on_the_encoder_grid_at_its_rate():
    settings = EncoderSettings(rate=500.0, noise=0.0)
    time = np.arange(0, 2.0, 1e-3)
    angle = 0.8 + 0.5 * np.sin(2 * math.pi * 0.7 * time)
    stamps, measured, _ = measure_trajectory(time, angle, settings, np.random.default_rng(0))
    assert len(stamps) == 1000 and np.allclose(np.diff(stamps), 1 / 500)
    counts = measured / settings.resolution
    # Each reading is an integer number of counts (up to the float rounding of the product).
    assert np.max(np.abs(counts - np.round(counts))) < 1e-6
    # Quantising moves a reading by at most half a count.
    assert np.max(np.abs(measured - np.interp(stamps, time, angle))) <= settings.resolution / 2 + 1e-12


def test_noise_is_at_its_rms_and_seeded():
    settings = EncoderSettings(noise=1e-3, resolution=0.0)
    time = np.linspace(0, 10, 10001)
    angle = np.full_like(time, 0.5)
    _, a, _ = measure_trajectory(time, angle, settings, np.random.default_rng(3))
    _, b, _ = measure_trajectory(time, angle, settings, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert np.std(a - 0.5) == pytest.approx(1e-3, rel=0.1)  # 5000 samples: sd of sd ~1 %


def test_velocity_follows_a_ramp_after_its_filter_settles():
    settings = EncoderSettings(rate=500.0, noise=0.0, velocity_cutoff=40.0)
    time = np.linspace(0, 1, 1001)
    _, _, velocity = measure_trajectory(time, 1.5 * time, settings, np.random.default_rng(0))
    # 40 Hz one-pole: time constant 4 ms, settled well within 0.2 s; the grid adds at most
    # one count per period of error to the raw difference, which the filter averages down.
    assert np.max(np.abs(velocity[100:] - 1.5)) < settings.resolution * settings.rate * 0.5


@pytest.mark.parametrize("field,value", [("rate", 0.0), ("resolution", -1.0), ("noise", -1e-3),
                                         ("velocity_cutoff", 300.0)])
def test_settings_refuse_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        EncoderSettings(**{field: value})


def test_streaming_reader_matches_the_batch_helper():
    settings = EncoderSettings()
    truth = 0.3 + 0.01 * np.arange(50)
    encoder = JointEncoder(settings, np.random.default_rng(5))
    stream = np.array([encoder.read(float(a)) for a in truth])
    time = np.arange(50) / settings.rate
    _, angle, velocity = measure_trajectory(time, truth, settings, np.random.default_rng(5))
    assert np.array_equal(stream[:, 0], angle) and np.array_equal(stream[:, 1], velocity)
