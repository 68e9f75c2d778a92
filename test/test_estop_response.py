"""The closed-loop demo's e-stop verdict (:func:`emg_msk_ros.closed_loop.estop_response`) on a
hand-made plant log: the bound runs from the zero command's arrival at the plant."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from emg_msk_ros.closed_loop import ZERO_TORQUE, estop_response

DT = 0.001  # s, plant step
DELAY, BANDWIDTH = 0.005, 80.0  # s, Hz: the actuator


def session(commands, zero_step: int, estop_at: float = 0.1, torque: float = 2.0):
    """A plant that applied ``torque`` N·m until step ``zero_step``, then nothing."""
    steps = 400
    applied = np.where(np.arange(steps) < zero_step, torque, 0.0)
    log = {"exo_torque": applied, "angle": np.zeros(steps), "velocity": np.zeros(steps)}
    plant = SimpleNamespace(
        log=log, steps=steps, commands=commands,
        settings=SimpleNamespace(dt=DT, actuator=SimpleNamespace(delay=DELAY,
                                                                 bandwidth=BANDWIDTH)),
        reference=SimpleNamespace(theta=np.zeros(steps)))
    return SimpleNamespace(plant=plant, estop_at=estop_at)


def settling(torque: float = 2.0) -> float:
    return math.log(torque / ZERO_TORQUE) / (2 * math.pi * BANDWIDTH)


def test_the_bound_runs_from_the_first_zero_command_at_the_plant():
    # a command sent before the e-stop arrives after it (not the delivery), then the zeros
    commands = [(0.090, 2.0), (0.103, 2.0), (0.107, 0.0), (0.112, 0.0)]
    result = estop_response(session(commands, zero_step=120), period=0.005)
    assert result["delivery_ms"] == pytest.approx(7.0)
    assert result["bound_ms"] == pytest.approx(10.0)  # the design budget, reported
    assert result["bound_with_actuator_lag_ms"] == pytest.approx(
        (0.007 + DELAY + settling() + DT) * 1e3)
    assert result["time_to_zero_ms"] == pytest.approx(20.0)
    assert result["time_to_zero_ms"] <= result["bound_with_actuator_lag_ms"]


def test_torque_held_up_after_the_zero_command_exceeds_the_bound():
    commands = [(0.102, 0.0)]
    late = estop_response(session(commands, zero_step=160), period=0.005)
    assert late["time_to_zero_ms"] > late["bound_with_actuator_lag_ms"]


def test_without_a_zero_command_there_is_no_bound():
    commands = [(0.102, 1.0), (0.107, 0.5)]
    result = estop_response(session(commands, zero_step=120), period=0.005)
    assert result["delivery_ms"] is None and result["bound_with_actuator_lag_ms"] is None
