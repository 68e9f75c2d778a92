"""The loop closed in simulation: the node graph with ``sim_exo`` as the wearer and the device.

:func:`run_session` brings up ``config/sim_exo.yaml``'s graph (sim_exo → emg_conditioner →
msk_estimator → assist_controller → sim_exo) in one process, has the simulated person do the
same task ``repeats`` times, enables the assist through ``assist/enable`` at the start of
repeat ``enable_repeat``, optionally engages ``assist/estop`` during a later one, records the
controller's topics, and returns what happened. :func:`phase_metrics`, :func:`command_checks`,
:func:`estop_response` and :func:`oscillation` turn that into the numbers the closed-loop demo
and ``emg-msk bench closed-loop`` report. Times are plant time, s from the first EMG sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emg_msk_ros.paths import config_path

COMMAND_TOPIC = "/effort_controller/commands"
RECORDED = ("/msk/joint_states", "/assist/state")
OSCILLATION_HZ = 3.0  # torque above this frequency counts toward oscillation
# The loop oscillates when the applied torque above OSCILLATION_HZ exceeds this RMS (N·m; 5 %
# of the default max_torque): human tracking torques lie below 2 Hz and the estimate's noise
# stays well under it (about 0.1-0.2 N·m at moment_fraction 0.3), a limit cycle does not.
OSCILLATION_RMS = 0.5
SETTLE = 0.5  # s at a phase's start left out of the torque above 3 Hz
ZERO_TORQUE = 0.01  # N·m: the applied torque counts as zero below this
TRACKING = 0.5  # the person tracks the target where the task engages them at least this much


@dataclass
class Session:
    """One closed-loop run: the plant (its logs and received commands), per-repeat sample
    ranges, the recorded bag, graph counts and when the assist was enabled / e-stopped."""

    plant: Any
    phases: list[slice]
    record: Path
    counts: dict
    stopped: str
    enabled_at: float | None
    enable_refusals: list[str]
    interruptions: list[str]  # faults during the assist, each cleared and the assist re-enabled
    estop_at: float | None
    wall_s: float
    controller: dict
    plant_start_ns: int  # system time of plant time 0


def sim_config(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The closed-loop graph's parameters (default ``config/sim_exo.yaml``)."""
    from emg_msk_ros.runner import load_config

    return load_config(path if path is not None else config_path("sim_exo.yaml"))


def wearer_calibration(config: dict, model):
    """The MVC calibration (:class:`~emg_msk_ros.signal.calibration.Calibration`) of the
    simulated wearer's electrodes, as a lab records it before a session, for ``model``'s
    conditioning (``model``: a loaded estimator)."""
    from emg_msk_ros.learning.dataset import simulated_mvc_calibration
    from emg_msk_ros.physics.exo_plant import PlantSettings, wearer_gains, wearer_recording
    from emg_msk_ros.physics.synth_emg import EmgSynthSettings

    values = config["sim_exo"]
    settings = PlantSettings(emg=EmgSynthSettings(
        sample_rate=float(values.get("emg_sample_rate", 2000.0))))
    preset = model.preset
    gains = wearer_gains(preset, settings, int(values.get("seed", 1)))
    return simulated_mvc_calibration(wearer_recording(preset, settings, gains), preset,
                                     model.conditioner_settings, "simulated wearer")


def estop_time(plant, phase: slice) -> float:
    """When to e-stop during ``phase``: where the target moves fastest (s)."""
    speed = np.abs(plant.reference.omega[phase])
    return (phase.start + int(np.argmax(speed))) * plant.settings.dt


def run_session(config: dict, record: Path, *, enable_repeat: int | None = 1,
                estop_repeat: int | None = None, progress=None, observers=None,
                record_topics=()) -> Session:
    """Run the closed loop once (see the module docstring); ``record`` must not exist.

    The e-stop, if any, comes during repeat ``estop_repeat`` (see :func:`estop_time`). A fault
    while assisting (the watchdog, when the graph falls behind real time on a starved machine)
    is noted in ``interruptions``, reset and the assist enabled again, as an operator would.
    ``observers`` (namespace -> msk_estimator parameters) run beside the loop as
    :class:`~emg_msk_ros.runner.Graph` describes; ``record_topics`` are recorded besides
    :data:`RECORDED` and the commands."""
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from std_msgs.msg import Bool
    from std_srvs.srv import SetBool, Trigger

    from emg_msk_ros.msg import AssistState
    from emg_msk_ros.runner import Graph

    reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    started = time.monotonic()
    with Graph(config, record=record, observers=observers,
               record_topics=[COMMAND_TOPIC, *RECORDED, *record_topics]) as graph:
        helper = graph.helper_node("closed_loop_operator")
        services = {"enable": (helper.create_client(SetBool, "assist/enable"),
                               SetBool.Request(data=True)),
                    "reset": (helper.create_client(Trigger, "assist/reset_fault"),
                              Trigger.Request())}
        estop = helper.create_publisher(Bool, "assist/estop", reliable)
        latest = {}  # the controller's last AssistState
        helper.create_subscription(AssistState, "assist/state",
                                   lambda msg: latest.update(state=msg), reliable)
        plant_node = graph.nodes["sim_exo"]
        plant = plant_node.plant
        task, dt = plant_node.task_samples, plant.settings.dt
        phases = [slice(k * task, min((k + 1) * task, len(plant.reference.theta)))
                  for k in range(math.ceil(len(plant.reference.theta) / task))]
        schedule = []  # (plant time s, action), in time order
        if enable_repeat is not None:
            schedule.append((phases[enable_repeat].start * dt, "enable"))
        if estop_repeat is not None:
            schedule += [(phases[estop_repeat].start * dt, "reset"),
                         (phases[estop_repeat].start * dt, "enable"),
                         (estop_time(plant, phases[estop_repeat]), "estop")]
        done: dict[str, list[float]] = {"enable": [], "reset": [], "estop": []}
        refusals, pending, interruptions = [], None, []
        graph.start()
        shown = 0
        while True:
            graph.spin_for(0.02)
            now = plant_node.plant_time()
            if progress is not None and now >= shown + 5:
                shown = int(now)
                progress(now, plant.duration)
            if pending is not None and pending[1].done():
                action, future = pending
                reply = future.result()
                if reply.success:
                    done[action].append(now)
                    schedule.pop(0)
                    if action == "reset":
                        latest.clear()  # judge the state by the messages after the reset
                elif not refusals or not refusals[-1].endswith(reply.message):
                    refusals.append(f"{now:.2f} s {action}: {reply.message}")
                pending = None
            state = latest.get("state")
            if (state is not None and state.state == AssistState.STATE_FAULTED
                    and done["enable"] and not done["estop"]
                    and (not schedule or schedule[0][1] != "reset" or schedule[0][0] > now)):
                # as an operator would: note the fault, clear it, enable again
                interruptions.append(f"{now:.2f} s: {state.fault_reason}")
                schedule[:0] = [(now, "reset"), (now, "enable")]
            elif pending is None and schedule and now >= schedule[0][0]:
                action = schedule[0][1]
                if action == "estop":
                    estop.publish(Bool(data=True))
                    done["estop"].append(plant_node.plant_time())
                    schedule.pop(0)
                else:
                    client, request = services[action]
                    pending = (action, client.call_async(request))
            if plant_node.finished.is_set() or plant_node.health.error:
                stopped = plant_node.health.error or "task finished"
                break
        graph.spin_for(0.1)
        counts = graph.counts()
        controller = dict(config.get("assist_controller", {}))
    return Session(plant, phases, record, counts, stopped,
                   done["enable"][0] if done["enable"] else None, refusals, interruptions,
                   done["estop"][0] if done["estop"] else None,
                   time.monotonic() - started, controller, plant_node.stream_start_ns)


def phase_metrics(session: Session, part: slice) -> dict[str, float]:
    """The person's effort, tracking and the device's torque over the samples ``part``.

    Tracking RMSE counts the samples where the person tracks the target; where the task has
    them relaxed (rests: no tracking, the limb settles under gravity and whatever torque acts)
    the largest deviation from the target is reported on its own. The oscillation share leaves
    The torque above 3 Hz leaves out the phase's first :data:`SETTLE` s (switching the
    assist on is a step, not a cycle)."""
    log, ref, dt = session.plant.log, session.plant.reference, session.plant.settings.dt
    settle = int(round(SETTLE / dt))
    angle_error = np.degrees(log["angle"][part] - ref.theta[part])
    tracking = ref.engaged[part] >= TRACKING
    return {
        "mean_abs_net_moment_nm": float(np.mean(np.abs(log["net_moment"][part]))),
        "mean_sum_sq_activation": float(np.mean(log["effort"][part])),
        "tracking_rmse_deg": float(np.sqrt(np.mean(angle_error[tracking]**2)))
        if tracking.any() else 0.0,
        "relaxed_max_deviation_deg": float(np.abs(angle_error[~tracking]).max())
        if (~tracking).any() else 0.0,
        "mean_abs_exo_torque_nm": float(np.mean(np.abs(log["exo_torque"][part]))),
        "max_abs_exo_torque_nm": float(np.max(np.abs(log["exo_torque"][part]))),
        "torque_above_3hz_rms_nm": oscillation(log["exo_torque"][part][settle:], dt),
    }


def oscillation(torque: np.ndarray, dt: float) -> float:
    """RMS (N·m) of the part of ``torque`` (sampled every ``dt`` s) above
    :data:`OSCILLATION_HZ`."""
    x = np.asarray(torque, dtype=float)
    if x.size < 2:
        return 0.0
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, dt) <= OSCILLATION_HZ] = 0.0
    return float(np.sqrt(np.mean(np.fft.irfft(spectrum, x.size) ** 2)))


def recorded(session: Session) -> dict[str, list]:
    """The recorded topics: (log time ns, message) lists."""
    from emg_msk_ros.io.bag_replay import read_topics

    return read_topics(session.record, [COMMAND_TOPIC, *RECORDED])


def command_checks(session: Session, topics: dict, period: float) -> dict:
    """Every recorded command against the controller's limits: |torque| <= max_torque and,
    for changes away from zero, |change| <= max_torque_rate × (time between the commands'
    arrival + one control ``period``, the arrival jitter allowed); a change toward zero is
    always allowed (the e-stop jumps there). Counts the limit flags the controller raised."""
    limits = session.controller
    max_torque = float(limits.get("max_torque", [10.0])[0])
    max_rate = float(limits.get("max_torque_rate", [100.0])[0])
    commands = topics[COMMAND_TOPIC]
    times = np.array([t for t, _ in commands], dtype=np.int64) * 1e-9
    values = np.array([m.data[0] for _, m in commands], dtype=float)
    over = np.abs(values) > max_torque + 1e-9
    # a step toward zero (e-stop, fault ramp, disable) may be as fast as it likes
    toward_zero = (np.abs(values[1:]) <= np.abs(values[:-1])) & (values[1:] * values[:-1] >= 0)
    steps = (np.abs(np.diff(values)) > max_rate * (np.diff(times) + period) + 1e-9) \
        & ~toward_zero
    flags = {name: 0 for name in ("saturated", "rate_limited", "range_limited",
                                  "velocity_limited", "stale_input")}
    faults = []
    for _, state in topics["/assist/state"]:
        for name in flags:
            value = getattr(state, name)
            flags[name] += int(any(value) if not isinstance(value, bool) else value)
        if state.fault and state.fault_reason and state.fault_reason not in faults:
            faults.append(state.fault_reason)
    return {"commands": int(values.size), "max_abs_command_nm": float(np.abs(values).max())
            if values.size else 0.0, "over_max_torque": int(over.sum()),
            "over_max_rate": int(steps.sum()), "max_torque_nm": max_torque,
            "max_torque_rate_nm_s": max_rate, "limit_flags": flags, "faults": faults}


def estop_response(session: Session, period: float) -> dict | None:
    """Time from the e-stop to zero applied torque (|torque| < :data:`ZERO_TORQUE` from then
    on), what the joint did in the next 0.5 s, the e-stop's delivery (until the plant receives
    the controller's first zero command) and two bounds: one control ``period`` plus the
    actuator's delay (the design budget), and the delivery plus the actuator's delay plus the
    time its first-order lag needs to take the torque at the e-stop below :data:`ZERO_TORQUE`
    plus one integration step (the resolution of the measured time): once the zero command is
    there, nothing may hold the torque up. ``time_to_zero_ms`` is None when the torque was
    already zero (e.g. after a fault); ``delivery_ms`` is None when no zero command came."""
    if session.estop_at is None:
        return None
    plant, log = session.plant, session.plant.log
    dt = plant.settings.dt
    first = int(math.ceil(session.estop_at / dt))
    applied = np.abs(log["exo_torque"][first:plant.steps])
    nonzero = np.flatnonzero(applied >= ZERO_TORQUE)
    zero_at = first + (nonzero[-1] + 1 if nonzero.size else 0)
    actuator = plant.settings.actuator
    after = slice(first, min(first + int(round(0.5 / dt)), plant.steps))
    error = log["angle"][after] - plant.reference.theta[after]
    torque = float(log["exo_torque"][min(first, plant.steps - 1)])
    measured = abs(torque) >= ZERO_TORQUE and zero_at < plant.steps  # else nothing to zero
    delivered = next((t for t, command in plant.commands
                      if t >= session.estop_at and command == 0.0), None)
    settling = math.log(max(abs(torque), ZERO_TORQUE) / ZERO_TORQUE) / (
        2 * math.pi * actuator.bandwidth)
    delivery = None if delivered is None else delivered - session.estop_at
    return {
        "estop_at_s": session.estop_at,
        "torque_at_estop_nm": torque,
        "time_to_zero_ms": (zero_at - first) * dt * 1e3 if measured else None,
        "delivery_ms": None if delivery is None else delivery * 1e3,
        "bound_ms": (period + actuator.delay) * 1e3,
        "bound_with_actuator_lag_ms": None if delivery is None else (
            delivery + actuator.delay + settling + dt) * 1e3,
        "joint_max_deviation_deg_500ms": float(np.degrees(np.abs(error).max())),
        "joint_max_speed_rad_s_500ms": float(np.abs(log["velocity"][after]).max()),
    }


def latency_ms(topics: dict) -> dict[str, dict[str, float]]:
    """p50/p99/max of arrival − stamp (ms) of the estimates and of the controller's state."""
    out = {}
    for key, topic in (("emg_to_estimate", "/msk/joint_states"),
                       ("emg_to_command", "/assist/state")):
        items = [(t, m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)
                 for t, m in topics[topic]]
        latency = np.array([(t - s) * 1e-6 for t, s in items if s > 0])
        if latency.size:
            p50, p99 = np.percentile(latency, [50, 99])
            out[key] = {"p50": float(p50), "p99": float(p99), "max": float(latency.max())}
    return out
