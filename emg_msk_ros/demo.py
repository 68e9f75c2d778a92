"""``emg-msk demo``: the loop closed in simulation — does the assist help, stay stable, stay safe?

    emg-msk demo [--out out/demo] [--duration 20] [--seed 7] [--gain 0.3] [--model knee-state]
                 [--emg-only-model knee] [--json]
    emg-msk demo --replay [--duration 20] [--rate 1.0] ...   (the open-loop replay below)

Closed loop (default): the graph of ``config/sim_exo.yaml`` runs in one process, with
``sim_exo`` (a simulated person wearing the exoskeleton) publishing raw EMG and the joint's
``joint_states`` and taking the assist controller's commands. The person does one task
(``--duration`` s of planned motion) twice: assist disabled, then enabled through
``assist/enable`` (moment_fraction law, ``--gain``); then the task's first seconds once more,
with ``assist/estop`` engaged where the target moves fastest. The report, per phase: the
person's effort (mean |net muscle moment| N·m, mean sum of squared activations), tracking RMSE
to the target (deg), the exoskeleton's torque and its RMS above 3 Hz; latencies, dropped
messages, every recorded command checked against the controller's limits, each limit flag the
controller raised, and the e-stop's time to zero torque with what the joint did. The
estimator runs the state-aided model (``models/knee-state``: EMG plus the exoskeleton's
``joint_states``) unless ``--model`` names another; ``--model knee`` is the EMG-only one. Beside
a state-aided model, a second, observe-only estimator runs the EMG-only ``--emg-only-model`` on
the same envelope under :data:`EMG_ONLY_NAMESPACE` (nothing reads it). Both are scored against
the plant's truth by stamp over the unassisted and assisted repeats
(:func:`emg_msk_ros.estimate_scores.score_models`: the prediction ahead beside
constant-velocity extrapolation of ``joint_states``; angle, forces and net moment now). Writes
``OUT/report.json`` (the scores under ``estimate``) and ``effort.png``, ``tracking.png``,
``torque.png``, ``latency.png``, ``estimate.png``.

Open-loop replay (``--replay``):

1. simulates a session of the model's preset (ground truth included) into ``OUT/session``, and
   the MVC calibration of its electrodes into ``OUT/calibration.yaml`` (the conditioner uses it,
   as a lab calibrates each session);
2. replays it through the whole graph (driver → conditioner → estimator → assist controller) in
   one process, at ``rate`` times real time, recording every topic into ``OUT/record``;
3. prints a short report — angle RMSE (deg), force NRMSE per muscle, messages in/out, drops,
   latency percentiles from each estimate's stamp to its arrival at the recorder — and writes
   ``OUT/report.json`` and PNG plots (``angle.png``, ``forces.png``, ``latency.png``).

DDS stays on this machine: when ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is unset the demo sets it to
LOCALHOST (and picks a ``ROS_DOMAIN_ID`` when that is unset), and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from emg_msk_ros import estimate_scores as scores
from emg_msk_ros.io.bag_replay import read_topics

# What a previous demo run left in OUT, removed before a new run (nothing else is touched).
OUTPUTS = ("session", "calibration.yaml", "record", "report.json", "angle.png", "forces.png",
           "latency.png", "effort.png", "tracking.png", "torque.png", "estimate.png")
PHASES = ("unassisted", "assisted", "e-stop")
# The closed loop's wearer publishes joint_states, so its estimator reads them (issue 16); the
# replayed session's graph has no exoskeleton.
CLOSED_LOOP_MODEL = "knee-state"
REPLAY_MODEL = "knee"
# The closed loop also runs the EMG-only model, observe-only, on the same envelope; it publishes
# under this namespace and is scored beside the state-aided one.
EMG_ONLY_MODEL = "knee"
EMG_ONLY_NAMESPACE = "emg_only"


def keep_dds_local() -> list[str]:
    """Set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID when unset; return notes."""
    notes = []
    if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        notes.append("ROS_AUTOMATIC_DISCOVERY_RANGE was unset: set to LOCALHOST (DDS stays on "
                     "this machine)")
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
        notes.append(f"ROS_DOMAIN_ID was unset: using {os.environ['ROS_DOMAIN_ID']}")
    return notes


def latency_ms(stamp_ns: np.ndarray, received_ns: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max of received − stamp, in ms."""
    latency = (received_ns - stamp_ns) * 1e-6
    if latency.size == 0:
        return {}
    p50, p90, p99 = np.percentile(latency, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(latency.max())}


def compare_with_truth(recording, estimates: dict[str, np.ndarray], start_ns: int,
                       muscle_names: list[str]) -> dict:
    """Angle RMSE (deg) and per-muscle force NRMSE of ``estimates`` against the session truth.

    An estimate stamped ``s`` belongs to session time ``start_time + (s − start_ns)`` (the
    driver maps the session's first sample to ``start_ns``).
    """
    from emg_msk_ros.learning.metrics import regression

    t = recording.start_time + (estimates["stamp_ns"] - start_ns) * 1e-9
    angle = regression(estimates["angle"], np.interp(t, recording.kin_time, recording.angle))
    out = {"angle_rmse_deg": float(np.degrees(angle["rmse"])), "angle_r2": angle["r2"],
           "force_nrmse": {}}
    if recording.force is not None:
        for i, name in enumerate(muscle_names):
            j = recording.muscle_names.index(name)
            truth = np.interp(t, recording.kin_time, recording.force[:, j])
            out["force_nrmse"][name] = regression(estimates["force"][:, i], truth)["nrmse"]
    return out


def plot(out: Path, recording, estimates: dict[str, np.ndarray], start_ns: int,
         muscle_names: list[str], latency: np.ndarray | None) -> list[Path]:
    """Write angle.png, forces.png and (with latencies) latency.png; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = recording.start_time + (estimates["stamp_ns"] - start_ns) * 1e-9
    files = []
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(recording.kin_time, np.degrees(recording.angle), "k", lw=1.2, label="truth")
    ax.plot(t, np.degrees(estimates["angle"]), "C1", lw=1.0, label="estimate (live graph)")
    ax.set(xlabel="time (s)", ylabel="joint angle (deg, flexion +)", title="Joint angle")
    ax.legend(loc="upper right")
    fig.tight_layout()
    files.append(out / "angle.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(muscle_names), 1, figsize=(10, 1.8 * len(muscle_names) + 0.6),
                             sharex=True, squeeze=False)
    for i, (name, ax) in enumerate(zip(muscle_names, axes[:, 0])):
        if recording.force is not None and name in recording.muscle_names:
            ax.plot(recording.kin_time, recording.force[:, recording.muscle_names.index(name)],
                    "k", lw=1.0, label="truth")
        ax.plot(t, estimates["force"][:, i], "C0", lw=0.9, label="estimate")
        ax.set_ylabel(f"{name}\n(N)", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle("Muscle forces")
    fig.tight_layout()
    files.append(out / "forces.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    if latency is not None and latency.size:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(latency, bins=60, color="C2")
        ax.set(xlabel="latency: EMG stamp to estimate received (ms)", ylabel="estimates",
               title="End-to-end latency")
        fig.tight_layout()
        files.append(out / "latency.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``emg-msk demo``."""
    parser.description = __doc__.splitlines()[0].replace("``", "")
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="output folder (default out/demo; a previous demo's files there "
                             "are replaced)")
    parser.add_argument("--replay", action="store_true",
                        help="the open-loop demo: replay a simulated session through the graph")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="task length (closed loop) or session length (--replay), s")
    parser.add_argument("--gain", type=float, default=0.3,
                        help="closed loop: moment_fraction gain of the assisted phase")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    parser.add_argument("--model", default=None,
                        help="model folder, or a name under the package's models/ (default: "
                             "knee-state in the closed loop, knee with --replay)")
    parser.add_argument("--emg-only-model", default=EMG_ONLY_MODEL,
                        help="closed loop with a state-aided --model: the EMG-only model run "
                             "beside it (observe-only) and scored against the same truth "
                             f"(default {EMG_ONLY_MODEL})")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="replay speed factor (latency is measured only at 1.0)")
    parser.add_argument("--config", type=Path, default=None,
                        help="graph parameters file (default: the package's sim_exo.yaml, "
                             "with --replay pipeline.yaml)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _simulate(estimator, duration: float, seed: int):
    """A new session of the kind the model was trained on: the motion settings of its first
    training session (model.yaml), the simulator's defaults when none are recorded."""
    from emg_msk_ros.physics.motions import MotionSettings
    from emg_msk_ros.physics.simulate import simulate_session
    from emg_msk_ros.physics.synth_emg import EmgSynthSettings

    sessions = estimator.meta.get("training", {}).get("sessions") or [{}]
    motion = sessions[0].get("metadata", {}).get("motion") or {}
    return simulate_session(estimator.preset, duration, seed, motion=MotionSettings(**motion),
                            emg=EmgSynthSettings(sample_rate=estimator.sample_rate))


def _replay(config: dict, record: Path, duration: float, rate: float):
    from emg_msk_ros.runner import Graph

    shown = [0]

    def progress(elapsed: float) -> None:
        done = int(min(elapsed * rate, duration))
        if done >= shown[0] + 5:
            shown[0] = done
            print(f"      {done:3d} / {duration:g} s of session replayed", flush=True)

    with Graph(config, record=record) as graph:
        graph.start()
        reason = graph.run(progress=progress)
        return reason, graph.counts(), graph.driver.stream_start_ns


def run(args: argparse.Namespace) -> int:
    """The closed-loop demo, or with ``--replay`` the open-loop one; exit code 0 when every
    step worked (the closed loop: and every safety check passed; the effort and tracking
    targets are reported, not enforced)."""
    for note in keep_dds_local():
        print(f"emg-msk demo: {note}")
    return run_replay(args) if args.replay else run_closed_loop(args)


def _clear(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def run_replay(args: argparse.Namespace) -> int:
    """Simulate, replay, record, report; exit code 0 when every step worked."""
    from emg_msk_ros.io.session_bag import write_recording
    from emg_msk_ros.learning.dataset import simulated_mvc_calibration
    from emg_msk_ros.learning.inference import ModelError, load_model
    from emg_msk_ros.nodes.common import resolve_model
    from emg_msk_ros.runner import GraphError, load_config

    out = args.out
    args.model = args.model or REPLAY_MODEL
    try:
        estimator = load_model(resolve_model(args.model))
        config = load_config(args.config)
    except (ModelError, GraphError) as exc:
        hint = "" if resolve_model(args.model).is_dir() else (
            "; --model takes a model folder (emg-msk train --out DIR) or the name of one "
            "under the package's models/")
        print(f"emg-msk demo: {exc}{hint}", file=sys.stderr)
        return 2
    # the estimator's first output needs a full window; a second more gives something to score
    shortest = estimator.window / estimator.conditioner_settings.output_rate_hz + 1.0
    if not shortest <= args.duration < math.inf:
        print(f"emg-msk demo: --duration {args.duration:g} s: give a finite length of at least "
              f"{shortest:g} s (the model's window alone is {shortest - 1.0:g} s)",
              file=sys.stderr)
        return 2
    if not args.rate > 0:
        print(f"emg-msk demo: --rate must be > 0, got {args.rate:g}", file=sys.stderr)
        return 2
    _clear(out)

    print(f"[1/3] simulating {args.duration:g} s of the {estimator.preset.name} preset "
          f"(seed {args.seed}) ...", flush=True)
    started = time.monotonic()
    recording = _simulate(estimator, args.duration, args.seed)
    session = write_recording(out / "session", recording, chunk_size=10)
    # A lab records MVC and rest trials with each session's electrodes; the simulator knows
    # their gains.
    calibration = simulated_mvc_calibration(recording, estimator.preset,
                                            estimator.conditioner_settings, "demo session")
    calibration_file = calibration.save(out / "calibration.yaml")
    print(f"      {session}, MVC calibration {calibration_file} "
          f"({time.monotonic() - started:.1f} s)")

    print(f"[2/3] replaying it through the node graph at {args.rate:g}x, recording to "
          f"{out / 'record'} ...", flush=True)
    model_path = str(estimator.path)
    config.setdefault("emg_driver", {}).update(source="bag", bag_path=str(session),
                                               rate=float(args.rate), loop=False,
                                               start_offset=0.0)
    for name in ("emg_conditioner", "msk_estimator"):
        config.setdefault(name, {}).update(model=model_path,
                                           calibration_file=str(calibration_file))
    try:
        reason, counts, start_ns = _replay(config, out / "record", args.duration, args.rate)
    except GraphError as exc:
        print(f"emg-msk demo: {exc}", file=sys.stderr)
        return 2

    print("[3/3] comparing the live estimate with the simulation's truth ...", flush=True)
    estimates = scores.recorded_estimates(out / "record")
    accuracy = compare_with_truth(recording, estimates, start_ns, estimator.muscle_names)
    latency = (estimates["received_ns"] - estimates["stamp_ns"]) * 1e-6 if args.rate == 1.0 \
        else None
    report = {
        "session_s": args.duration, "rate": args.rate, "model": model_path, "stopped": reason,
        "estimates": int(estimates["angle"].size), **accuracy,
        "messages": {name: {"in": sum(c["received"].values()), "out": sum(c["published"].values())}
                     for name, c in counts.items()},
        "dropped": sum(c["dropped"] for c in counts.values()),
        "repeated": sum(c["repeated"] for c in counts.values()),
        "latency_ms": latency_ms(estimates["stamp_ns"], estimates["received_ns"])
        if latency is not None else None,
    }
    report["plots"] = [str(p) for p in plot(out, recording, estimates, start_ns,
                                            estimator.muscle_names, latency)]
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if reason == "drained" else 1


def print_report(report: dict) -> None:
    """The report as a few aligned lines."""
    print(f"\nemg-msk demo: {report['session_s']:g} s session through the live graph "
          f"({report['estimates']} estimates; run ended: {report['stopped']})")
    print(f"  angle RMSE        {report['angle_rmse_deg']:6.2f} deg   (R² {report['angle_r2']:.3f})")
    for name, value in report["force_nrmse"].items():
        print(f"  force NRMSE       {100 * value:6.1f} %     {name}")
    for name, count in report["messages"].items():
        print(f"  messages          in {count['in']:6d}  out {count['out']:6d}   {name}")
    print(f"  dropped/repeated  {report['dropped']} / {report['repeated']} samples or messages")
    if report["latency_ms"]:
        lat = report["latency_ms"]
        print(f"  latency (ms)      p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  "
              f"p99 {lat['p99']:.2f}  max {lat['max']:.2f}   (EMG stamp -> estimate received)")
    else:
        print("  latency           not measured (replay rate is not 1.0)")
    print(f"  plots             {', '.join(report['plots'])}")


def run_closed_loop(args: argparse.Namespace) -> int:
    """Unassisted and assisted repeats of one task, then an e-stop; report and plots."""
    from emg_msk_ros import closed_loop as loop
    from emg_msk_ros.learning.inference import ModelError, load_model
    from emg_msk_ros.nodes.common import resolve_model
    from emg_msk_ros.runner import GraphError

    started = time.monotonic()
    out = args.out
    if not 2.0 <= args.duration <= 600.0 or not 0.0 <= args.gain <= 1.0:
        print("emg-msk demo: --duration must be in [2, 600] s and --gain in [0, 1]",
              file=sys.stderr)
        return 2
    try:
        estimator = load_model(resolve_model(args.model or CLOSED_LOOP_MODEL))
        comparison = emg_only_beside(estimator, args.emg_only_model)
        config = loop.sim_config(args.config)
    except (ModelError, GraphError) as exc:
        print(f"emg-msk demo: {exc}", file=sys.stderr)
        return 2
    _clear(out)
    config["sim_exo"].update(seed=int(args.seed), task_duration=float(args.duration),
                             repeats=2, extra=4.0, preset=estimator.preset.name)
    # the wearer's electrodes (their gains follow the seed), calibrated as a lab would
    calibration = loop.wearer_calibration(config, estimator).save(out / "calibration.yaml")
    model_path = str(estimator.path)
    for name in ("emg_conditioner", "msk_estimator"):
        config.setdefault(name, {}).update(model=model_path, calibration_file=str(calibration))
    observers = None if comparison is None else {EMG_ONLY_NAMESPACE: {
        "model": str(comparison.path), "calibration_file": str(calibration)}}
    controller = config.setdefault("assist_controller", {})
    controller.update(assist_law="moment_fraction", moment_gain=[float(args.gain)])
    print(f"[1/2] closed loop: a simulated wearer does a {args.duration:g} s task unassisted, "
          f"then assisted (moment_fraction {args.gain:g}), then is e-stopped mid-motion ...",
          flush=True)

    def progress(now: float, total: float) -> None:
        print(f"      {now:5.1f} / {total:.1f} s", flush=True)

    try:
        session = loop.run_session(config, out / "record", enable_repeat=1, estop_repeat=2,
                                   progress=progress, observers=observers,
                                   record_topics=scored_topics(comparison))
    except GraphError as exc:
        print(f"emg-msk demo: {exc}", file=sys.stderr)
        return 2
    print("[2/2] scoring the phases, the recorded commands and the estimates ...", flush=True)
    report = closed_loop_report(session, loop, args.gain)
    report["plots"] = [str(p) for p in plot_closed_loop(out, session, report)]
    try:
        series = loop_estimates(session, estimator, comparison)
        report["estimate"] = estimate_report(series, session, estimator, comparison)
        report["plots"].append(str(plot_estimates(out, series, session, report["estimate"])))
    except ValueError as exc:  # e.g. too few estimates: say why; the loop's report stands
        report["estimate"] = {"error": str(exc)}
    report["wall_s"] = time.monotonic() - started
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_closed_loop(report)
    return 0 if report["checks"]["safe"] and "error" not in report["estimate"] else 1


def emg_only_beside(estimator, name: str):
    """The EMG-only model ``name`` (loaded) to run beside a state-aided ``estimator`` on the
    same envelope; None when ``estimator`` is EMG-only itself. A ModelError when it is not
    EMG-only or cannot read that envelope (channels, rate, conditioning, muscles differ)."""
    from emg_msk_ros.learning.inference import ModelError, load_model
    from emg_msk_ros.nodes.common import resolve_model

    if not estimator.needs_joint_state:
        return None
    model = load_model(resolve_model(name))
    if model.needs_joint_state:
        raise ModelError(f"--emg-only-model {model.path} is state-aided")

    def inputs(m):
        return m.channel_names, m.model_rate, m.conditioner_settings, m.muscle_names

    if inputs(model) != inputs(estimator):
        raise ModelError(f"--emg-only-model {model.path} differs from {estimator.path} in its "
                         "channels, model rate, conditioning or muscles: it cannot be run on "
                         "the same envelope and scored beside it")
    return model


def scored_topics(comparison) -> list[str]:
    """What the closed loop records for :func:`loop_estimates` besides
    :data:`emg_msk_ros.closed_loop.RECORDED`."""
    topics = ["/msk/muscle_states"]
    if comparison is not None:
        topics += ["/msk/joint_prediction", "/joint_states",
                   *scores.estimate_topics(EMG_ONLY_NAMESPACE)]
    return topics


def loop_estimates(session, estimator, comparison) -> dict:
    """The closed loop's estimates as :mod:`emg_msk_ros.estimate_scores` takes them, with the
    plant's truth: ``truth``, ``emg_only`` and, with a state-aided ``estimator`` (whose
    EMG-only ``comparison`` ran beside it), ``state_aided``, ``prediction``, ``readings``."""
    topics = read_topics(session.record, ["/msk/joint_states", *scored_topics(comparison)])
    log, steps = session.plant.log, session.plant.steps
    series = {"truth": scores.Truth(log["time"][:steps], log["angle"][:steps],
                                    log["force"][:steps], log["net_moment"][:steps],
                                    tuple(session.plant.preset.muscle_names))}
    main = scores.estimates_from(topics["/msk/joint_states"], topics["/msk/muscle_states"],
                                 str(estimator.path))
    if comparison is None:
        return {**series, "emg_only": main}
    joints, muscles = scores.estimate_topics(EMG_ONLY_NAMESPACE)
    return {**series, "state_aided": main,
            "emg_only": scores.estimates_from(topics[joints], topics[muscles],
                                              str(comparison.path)),
            "prediction": scores.joint_series(topics["/msk/joint_prediction"]),
            "readings": scores.joint_series(topics["/joint_states"])}


def estimate_report(series: dict, session, estimator, comparison) -> dict:
    """Each model's estimate against the plant's truth over the unassisted and assisted
    repeats (:func:`emg_msk_ros.estimate_scores.score_models`)."""
    dt = session.plant.settings.dt
    windows = {name: (part.start * dt, part.stop * dt)
               for name, part in zip(PHASES[:2], session.phases)}
    horizon = getattr(estimator, "horizon_s", 0.0) if comparison is not None else 0.0
    result = scores.score_models(
        series["truth"], session.plant_start_ns, windows, estimator.muscle_names,
        emg_only=series["emg_only"], state_aided=series.get("state_aided"),
        prediction=series.get("prediction"), readings=series.get("readings"),
        horizon_s=horizon)
    return {"windows_s": windows, "horizon_ms": 1000.0 * horizon,
            "models": {"state_aided": str(estimator.path) if comparison is not None else None,
                       "emg_only": str((comparison or estimator).path)}, **result}


def closed_loop_report(session, loop, gain: float) -> dict:
    """The closed-loop demo's numbers (see the module docstring) and its pass/fail checks."""
    period = 1.0 / float(session.controller.get("control_rate", 200.0))
    topics = loop.recorded(session)
    phases = {name: loop.phase_metrics(session, part)
              for name, part in zip(PHASES, session.phases)}
    off, on = phases["unassisted"], phases["assisted"]
    reduction = 1.0 - on["mean_abs_net_moment_nm"] / off["mean_abs_net_moment_nm"]
    tracking_rise = on["tracking_rmse_deg"] - off["tracking_rmse_deg"]
    commands = loop.command_checks(session, topics, period)
    estop = loop.estop_response(session, period)
    counts = session.counts
    links = {"emg/raw": (counts.get("sim_exo", {}).get("published", {}).get("emg/raw", 0),
                         counts.get("emg_conditioner", {}).get("received", {}).get("emg/raw", 0)),
             "commands": (commands["commands"], len(session.plant.commands))}
    safety = {
        "no_command_past_a_limit": commands["over_max_torque"] == 0
        and commands["over_max_rate"] == 0,
        "estop_within_bound_with_actuator_lag": bool(
            estop and estop["time_to_zero_ms"] is not None
            and estop["bound_with_actuator_lag_ms"] is not None
            and estop["time_to_zero_ms"] <= estop["bound_with_actuator_lag_ms"]),
        "assist_enabled": session.enabled_at is not None,
    }
    targets = {"effort_reduction_ge_20pct": reduction >= 0.20,
               "tracking_rise_le_1deg": tracking_rise <= 1.0}
    checks = {"safety": safety, "targets": targets, "safe": all(safety.values())}
    return {
        "gain": gain, "task_s": session.phases[0].stop * session.plant.settings.dt,
        "run_ended": session.stopped, "enabled_at_s": session.enabled_at,
        "enable_refusals": session.enable_refusals,
        "assist_interruptions": session.interruptions, "phases": phases,
        "effort_reduction": reduction, "tracking_rise_deg": tracking_rise,
        "commands": commands, "estop": estop, "latency_ms": loop.latency_ms(topics),
        "dropped": sum(c["dropped"] for c in counts.values()),
        "repeated": sum(c["repeated"] for c in counts.values()),
        "messages_sent_received": {k: list(v) for k, v in links.items()},
        "graph_wall_s": session.wall_s, "checks": checks,
    }


def plot_closed_loop(out: Path, session, report: dict) -> list[Path]:
    """effort.png, tracking.png, torque.png, latency.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, ref, dt = session.plant.log, session.plant.reference, session.plant.settings.dt
    files = []

    def save(fig, name):
        fig.tight_layout()
        files.append(out / name)
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    for name, part in zip(PHASES[:2], session.phases):
        t = np.arange(part.stop - part.start) * dt
        axes[0].plot(t, log["net_moment"][part], lw=0.9, label=name)
        axes[1].plot(t, log["effort"][part], lw=0.9, label=name)
    axes[0].set(ylabel="net muscle moment (N·m)", title="The person's effort, same task")
    axes[1].set(xlabel="time in task (s)", ylabel="sum of squared activations")
    axes[0].legend(loc="upper right")
    save(fig, "effort.png")

    fig, ax = plt.subplots(figsize=(10, 3.5))
    part = session.phases[0]
    t = np.arange(part.stop - part.start) * dt
    ax.plot(t, np.degrees(ref.theta[part]), "k", lw=1.2, label="target")
    for name, part in zip(PHASES[:2], session.phases):
        ax.plot(np.arange(part.stop - part.start) * dt, np.degrees(log["angle"][part]),
                lw=0.9, label=name)
    ax.set(xlabel="time in task (s)", ylabel="joint angle (deg)", title="Tracking")
    ax.legend(loc="upper right")
    save(fig, "tracking.png")

    fig, ax = plt.subplots(figsize=(10, 3.5))
    steps = session.plant.steps
    ax.plot(log["time"][:steps], log["exo_torque"][:steps], "C3", lw=0.9, label="applied")
    if session.plant.commands:
        ct, cv = zip(*session.plant.commands)
        ax.plot(ct, cv, "C0", lw=0.6, alpha=0.7, label="commanded (received)")
    if session.estop_at is not None:
        ax.axvline(session.estop_at, color="k", ls="--", lw=0.8, label="e-stop")
    ax.set(xlabel="time (s)", ylabel="exoskeleton torque (N·m)", title="Assist torque")
    ax.legend(loc="upper left")
    save(fig, "torque.png")

    topics = read_topics(session.record, ["/assist/state"])["/assist/state"]
    latency = np.array([(t - (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec))
                        * 1e-6 for t, m in topics if m.header.stamp.sec > 0])
    if latency.size:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(latency, bins=60, color="C2")
        ax.set(xlabel="EMG stamp to controller state received (ms)", ylabel="messages",
               title="Loop latency")
        save(fig, "latency.png")
    return files


def plot_estimates(out: Path, series: dict, session, estimate: dict) -> Path:
    """estimate.png: the plant's truth, the state-aided prediction drawn at the time it
    predicts (stamp + horizon) and the EMG-only estimate (at its stamp): joint angle and net
    muscle moment, the scored windows unshaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, start = series["truth"], session.plant_start_ns
    horizon = estimate["horizon_ms"] / 1000.0
    fig, (angle, moment) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    angle.plot(truth.time, np.degrees(truth.angle), "k", lw=1.2, label="truth")
    moment.plot(truth.time, truth.net_moment, "k", lw=1.2, label="truth")
    scored = estimate["state_aided"]["all"] if estimate["state_aided"] else None
    if scored is not None:
        t = (series["prediction"]["stamp_ns"] - start) * 1e-9 + horizon
        angle.plot(t, np.degrees(series["prediction"]["angle"]), "C0", lw=0.9,
                   label=f"state-aided, {estimate['horizon_ms']:g} ms ahead, drawn at the time "
                         f"it predicts (RMSE {scored['angle_ahead_rmse_deg']:.2f}°)")
        moment.plot((series["state_aided"]["stamp_ns"] - start) * 1e-9,
                    series["state_aided"]["net_moment"], "C0", lw=0.9,
                    label=f"state-aided (NRMSE {100 * scored['net_moment_nrmse']:.1f} %)")
    emg = estimate["emg_only"]["all"]
    t = (series["emg_only"]["stamp_ns"] - start) * 1e-9
    angle.plot(t, np.degrees(series["emg_only"]["angle"]), "C1", lw=0.9,
               label=f"EMG-only, now (RMSE {emg['angle_rmse_deg']:.2f}°)")
    moment.plot(t, series["emg_only"]["net_moment"], "C1", lw=0.9,
                label=f"EMG-only (NRMSE {100 * emg['net_moment_nrmse']:.1f} %)")
    end = max(stop for _, stop in estimate["windows_s"].values())
    for ax in (angle, moment):
        ax.axvspan(end, truth.time[-1], color="0.9", zorder=0)  # the e-stop repeat: not scored
        ax.legend(loc="upper right", fontsize=8)
    angle.set(ylabel="joint angle (deg)", title="The estimates against the truth (grey: not "
              "scored)")
    moment.set(xlabel="time (s)", ylabel="net muscle moment (N·m)")
    fig.tight_layout()
    path = out / "estimate.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_estimates(estimate: dict) -> None:
    """The estimate section of the closed-loop report as aligned lines."""
    if "error" in estimate:
        print(f"  estimates not scored: {estimate['error']}")
        return
    columns = [*estimate["windows_s"], "all"]
    models = estimate["models"]
    samples = estimate["emg_only"]["all"]["samples"]
    print(f"  estimates against the plant's truth, by stamp ({samples} stamps, the same for every "
          "model: unassisted and assisted repeats, after the first full window)")
    print(f"  {'':44s}" + "".join(f"{name:>11s}" for name in columns))

    def row(label, model, key, scale=1.0, fmt="{:11.2f}"):
        print(f"  {label:44s}" + "".join(fmt.format(scale * estimate[model][c][key])
                                          for c in columns))

    def now(model):
        row("  angle now RMSE deg", model, "angle_rmse_deg")
        row("  force NRMSE % (mean over muscles)", model, "force_nrmse", 100.0, "{:11.1f}")
        row("  net moment NRMSE %", model, "net_moment_nrmse", 100.0, "{:11.1f}")

    if estimate["state_aided"]:
        print(f"  state-aided {Path(models['state_aided']).name}")
        row(f"  angle {estimate['horizon_ms']:g} ms ahead RMSE deg", "state_aided",
            "angle_ahead_rmse_deg")
        row("  constant velocity from joint_states, deg", "state_aided",
            "constant_velocity_rmse_deg")
        now("state_aided")
    print(f"  EMG-only {Path(models['emg_only']).name}")
    now("emg_only")


def print_closed_loop(report: dict) -> None:
    """The closed-loop report as aligned lines."""
    print(f"\nemg-msk demo (closed loop): {report['task_s']:.1f} s task, moment_fraction "
          f"{report['gain']:g}; assist enabled at {report['enabled_at_s']} s; "
          f"run: {report['run_ended']}")
    print(f"  {'':29s}" + "".join(f"{name:>12s}" for name in PHASES))
    rows = (("mean |net muscle moment| N·m", "mean_abs_net_moment_nm", "{:12.2f}"),
            ("mean sum of squared act.", "mean_sum_sq_activation", "{:12.4f}"),
            ("tracking RMSE deg (tracking)", "tracking_rmse_deg", "{:12.2f}"),
            ("max deviation deg (relaxed)", "relaxed_max_deviation_deg", "{:12.2f}"),
            ("mean |exo torque| N·m", "mean_abs_exo_torque_nm", "{:12.2f}"),
            ("max |exo torque| N·m", "max_abs_exo_torque_nm", "{:12.2f}"),
            ("exo torque > 3 Hz RMS N·m", "torque_above_3hz_rms_nm", "{:12.2f}"))
    for label, key, fmt in rows:
        print(f"  {label:29s}" + "".join(fmt.format(report["phases"][p][key]) for p in PHASES))
    print(f"  effort reduction {100 * report['effort_reduction']:.1f} % (mean |net moment|), "
          f"tracking RMSE change {report['tracking_rise_deg']:+.2f} deg")
    c = report["commands"]
    print(f"  commands {c['commands']}: max |torque| {c['max_abs_command_nm']:.2f} of "
          f"{c['max_torque_nm']:g} N·m; past max_torque {c['over_max_torque']}, past "
          f"max_torque_rate {c['over_max_rate']}; limit flags {c['limit_flags']}")
    if c["faults"]:
        print(f"  faults: {'; '.join(c['faults'])}")
    if report["enable_refusals"]:
        print(f"  refused: {'; '.join(report['enable_refusals'])}")
    if report["assist_interruptions"]:
        print(f"  assist interrupted (fault, then reset and enabled again): "
              f"{'; '.join(report['assist_interruptions'])}")
    e = report["estop"]
    if e:
        delivery, bound, zero = (e["delivery_ms"], e["bound_with_actuator_lag_ms"],
                                 e["time_to_zero_ms"])
        print(f"  e-stop at {e['estop_at_s']:.2f} s ({e['torque_at_estop_nm']:.2f} N·m): zero "
              "torque " + ("already" if zero is None else f"after {zero:.1f} ms")
              + "; the zero command reached the plant "
              + ("never" if delivery is None else f"after {delivery:.1f} ms")
              + f" (control period + actuator delay {e['bound_ms']:.1f} ms); bound: that + "
              "actuator delay + lag to zero " + ("-" if bound is None else f"{bound:.1f} ms")
              + "; joint within 0.5 s: max deviation "
              f"{e['joint_max_deviation_deg_500ms']:.2f} deg, max speed "
              f"{e['joint_max_speed_rad_s_500ms']:.2f} rad/s")
    for key, lat in report["latency_ms"].items():
        print(f"  latency {key:16s} p50 {lat['p50']:.2f}  p99 {lat['p99']:.2f}  max "
              f"{lat['max']:.2f} ms")
    print(f"  dropped/repeated {report['dropped']} / {report['repeated']}; sent/received "
          f"{report['messages_sent_received']}")
    print_estimates(report["estimate"])
    print(f"  safety checks {report['checks']['safety']}")
    print(f"  targets       {report['checks']['targets']}")
    print(f"  wall time {report['wall_s']:.1f} s; plots {', '.join(report['plots'])}")
