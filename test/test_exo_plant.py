"""The simulated wearer and exoskeleton without ROS: determinism, agreement with the open-loop
simulator, the actuator's limit, delay and bandwidth, and the person's adaptation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from emg_msk_ros.physics.exo_plant import (Actuator, ActuatorSettings, ExoPlant, PlantSettings,
                                           wearer_gains)
from emg_msk_ros.physics.motions import (MotionSettings, plan_reference, plan_task, rest_angle,
                                         track)
from emg_msk_ros.physics.motor_control import MotorSettings
from emg_msk_ros.physics.preset import load_preset

pytestmark = pytest.mark.kernels  # integrates the plant against the simulator: float results

DT = 0.001


@pytest.fixture(scope="module")
def knee():
    return load_preset("knee")


def run(plant: ExoPlant, chunk: float = 0.005, command=None):
    emg, readings = [], []
    while not plant.done:
        if command is not None:
            plant.command(plant.time, command(plant))
        out = plant.advance(plant.time + chunk)
        assert out.first_sample == sum(e.shape[0] for e in emg)
        emg.append(out.emg)
        readings += out.readings
    return np.concatenate(emg), np.array(readings)


def small_plant(knee, seed):
    settings = PlantSettings()
    task = plan_task(knee, 2.0, settings.dt, np.random.default_rng(seed), settings.motion)
    return ExoPlant(knee, task, settings, seed)


def test_the_plant_is_deterministic_for_a_seed(knee):
    first, second = (small_plant(knee, 3) for _ in range(2))
    (emg1, read1), (emg2, read2) = (run(p) for p in (first, second))
    np.testing.assert_array_equal(emg1, emg2)
    np.testing.assert_array_equal(read1, read2)
    for key in first.log:
        np.testing.assert_array_equal(first.log[key], second.log[key])
    assert emg1.shape[0] == first.emg_samples
    assert not np.array_equal(wearer_gains(knee, first.settings, 4), first.sources.gains)
    # the readings come at the encoder's rate, on its grid
    assert np.allclose(np.diff(read1[:, 0]), 1.0 / first.settings.encoder.rate)
    resolution = first.settings.encoder.resolution
    assert np.allclose(read1[:, 1] / resolution, np.round(read1[:, 1] / resolution))
    np.testing.assert_array_equal(wearer_gains(knee, first.settings, 3), first.sources.gains)


def open_loop(knee, seed):
    settings = MotionSettings(max_speed=1.5)
    rest = rest_angle(knee, settings.tone)
    rng = np.random.default_rng(seed)
    reference = plan_reference(knee, 6000, DT, rng, settings, rest, rest)
    return reference, rng, settings


def test_with_zero_exo_torque_the_plant_reproduces_the_open_loop_simulator(knee):
    reference, rng, settings = open_loop(knee, 5)
    trial = track(knee, reference, DT, rng, settings)
    # without a reaction delay the person is the simulator's tracker: the same motion
    _, rng, _ = open_loop(knee, 5)
    ideal = PlantSettings(dt=DT, motion=settings, motor=MotorSettings())
    plant = ExoPlant(knee, reference, ideal, 0, motor_rng=rng)
    run(plant)
    np.testing.assert_allclose(plant.log["angle"], trial.angle, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plant.log["moment"], trial.moment, rtol=0, atol=1e-9)
    np.testing.assert_allclose(plant.log["force"], trial.force, rtol=0, atol=1e-7)
    assert not plant.log["exo_torque"].any()
    # with the wearer's 0.12 s reaction delay (and a slower feedback for it) the motion stays
    # within 1 deg RMS of it: the feedforward carries the motion, the feedback only corrects
    _, rng, _ = open_loop(knee, 5)
    plant = ExoPlant(knee, reference, dataclasses.replace(ideal, motor=PlantSettings().motor),
                     0, motor_rng=rng)
    run(plant)
    difference = np.degrees(np.sqrt(np.mean((plant.log["angle"] - trial.angle) ** 2)))
    assert difference < 1.0


def test_actuator_delay_bandwidth_and_limit():
    settings = ActuatorSettings(torque_limit=5.0, bandwidth=20.0, delay=0.01,
                                command_timeout=0.05)
    actuator = Actuator(settings, DT)
    actuator.command(0.0, 100.0)  # past the limit
    applied = []
    for i in range(40):
        actuator.command(i * DT, 100.0)
        applied.append(actuator.step(i * DT))
    applied = np.array(applied)
    assert not applied[:10].any()  # nothing before the transport delay
    assert applied[10] > 0
    assert applied.max() <= 5.0  # never past the limit
    # first order: 63 % of the (clamped) step one time constant after the delay
    tau_steps = round(1.0 / (2 * math.pi * 20.0) / DT)
    assert applied[10 + tau_steps - 1] == pytest.approx(5.0 * (1 - math.exp(-1)), rel=0.05)
    # commands stop: the torque goes to zero after the timeout (plus the delay)
    for i in range(40, 200):
        applied = np.append(applied, actuator.step(i * DT))
    assert abs(applied[-1]) < 1e-3
    assert np.all(np.abs(applied) <= 5.0)


def test_actuator_refuses_non_finite_commands():
    actuator = Actuator(ActuatorSettings(delay=0.0), DT)
    actuator.command(0.0, 2.0)
    actuator.step(0.0)
    actuator.command(DT, float("nan"))
    values = [actuator.step(k * DT) for k in range(1, 100)]
    assert actuator.rejected == 1 and np.all(np.isfinite(values)) and abs(values[-1]) < 1e-3


def test_the_wearer_stops_pushing_where_the_device_pushes(knee):
    """A steady 3 N·m of assistance: after a few seconds of adaptation the person's own net
    moment is about 3 N·m lower than unassisted on the same task, at about the same tracking
    while they move (at rest, relaxed, the device's torque moves the limb)."""
    settings = PlantSettings()
    task = plan_task(knee, 8.0, settings.dt, np.random.default_rng(2), settings.motion)
    alone, helped = ExoPlant(knee, task, settings, 2), ExoPlant(knee, task, settings, 2)
    run(alone)
    run(helped, command=lambda plant: 3.0)
    late = slice(len(task.theta) // 2, None)  # after the adaptation (2 s forgetting time)
    drop = np.mean(alone.log["net_moment"][late] - helped.log["net_moment"][late])
    assert drop == pytest.approx(3.0, abs=0.5)
    moving = np.zeros(len(task.theta), bool)
    moving[late] = task.engaged[late] > 0.99
    rmse = [np.degrees(np.sqrt(np.mean((p.log["angle"][moving] - task.theta[moving]) ** 2)))
            for p in (alone, helped)]
    assert rmse[1] < rmse[0] + 1.0


def test_command_checks_flag_commands_past_the_limits_but_not_steps_to_zero():
    from types import SimpleNamespace

    from emg_msk_ros import closed_loop as loop

    def command(ms, value):
        return (int(ms * 1e6), SimpleNamespace(data=[value]))

    state = SimpleNamespace(saturated=[True], rate_limited=[False], range_limited=[False],
                            velocity_limited=[False], stale_input=False, fault=False,
                            fault_reason="")
    session = SimpleNamespace(controller={"max_torque": [10.0], "max_torque_rate": [100.0]})
    ok = [command(0, 0.0), command(5, 0.5), command(10, 1.0), command(11, 0.0)]  # e-stop jump
    topics = {loop.COMMAND_TOPIC: ok, "/assist/state": [(0, state)]}
    checks = loop.command_checks(session, topics, 0.005)
    assert (checks["over_max_torque"], checks["over_max_rate"]) == (0, 0)
    assert checks["limit_flags"]["saturated"] == 1
    bad = ok + [command(16, 10.5), command(21, -9.0)]  # past max_torque; a jump through zero
    checks = loop.command_checks(session, {**topics, loop.COMMAND_TOPIC: bad}, 0.005)
    assert (checks["over_max_torque"], checks["over_max_rate"]) == (1, 2)


def test_oscillation_is_the_torque_above_3_hz():
    from emg_msk_ros import closed_loop as loop

    t = np.arange(4000) * 0.002  # 8 s
    slow = 3.0 * np.sin(2 * np.pi * 0.5 * t) + 2.0  # a tracking torque: nothing above 3 Hz
    cycle = np.sin(2 * np.pi * 6.0 * t)  # a 6 Hz limit cycle, 1 N·m amplitude
    assert loop.oscillation(slow, 0.002) < 1e-6
    assert loop.oscillation(slow + cycle, 0.002) == pytest.approx(np.sqrt(0.5), rel=1e-3)
    assert loop.oscillation(slow + cycle, 0.002) > loop.OSCILLATION_RMS
