"""Closed-loop stability: a gain sweep of each assist law with the real node graph in the loop.

``emg-msk bench closed-loop [--json] [--quick] [--task S] [--laws NAME...]``.

For each law and gain, the graph of ``config/sim_exo.yaml`` runs in real time (sim_exo →
conditioner → estimator → assist controller → sim_exo): the simulated wearer does one task
of ``--task`` s unassisted, then the same task with the assist enabled (``assist/enable``).
Baseline: the unassisted repeat of the same run. Reported per gain: the reduction of the
person's mean |net muscle moment|, the change of tracking RMSE (deg), the mean |exo torque|,
the RMS of the applied torque above 3 Hz, and faults. The loop counts as oscillating when
that RMS exceeds 0.5 N·m (human tracking torques lie below 2 Hz; a limit cycle of the loop
shows above 3 Hz). Per law: the stable range (gains up to the first that
oscillates) and the helpful range (stable gains that lower the person's effort with tracking
RMSE up by at most 1 deg). A run the controller's watchdog faulted (inputs late: on a busy
machine the graph falls behind real time) is reported and not judged.
``--quick``: moment_fraction at 0.3 only, on a 3 s task (about 15 s of real time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from emg_msk_ros.benchmarking import add_quick

GAINS = {  # law -> (parameter, gains swept)
    "moment_fraction": ("moment_gain", (0.1, 0.3, 0.5, 0.7, 0.9)),
    "myoelectric": ("myoelectric_gain", (10.0, 20.0, 40.0, 80.0, 160.0)),
    "impedance": ("stiffness", (20.0, 40.0, 80.0, 160.0, 320.0)),
}
FLEXORS = ["biceps_femoris", "semitendinosus"]
EXTENSORS = ["rectus_femoris", "vastus_medialis"]


def one_run(law: str, gain: float, task: float, seed: int, folder: Path, model) -> dict:
    """Unassisted then assisted repeat of one task with ``law`` at ``gain``."""
    from emg_msk_ros import closed_loop as loop

    config = loop.sim_config()
    config["sim_exo"].update(task_duration=float(task), repeats=2, extra=0.0, seed=seed)
    calibration = loop.wearer_calibration(config, model).save(folder / f"{law}-{gain}.yaml")
    for name in ("emg_conditioner", "msk_estimator"):
        config[name].update(model=str(model.path), calibration_file=str(calibration))
    parameter = GAINS[law][0]
    config["assist_controller"].update(assist_law=law, flexor_muscles=FLEXORS,
                                       extensor_muscles=EXTENSORS, **{parameter: [gain]})
    session = loop.run_session(config, folder / f"{law}-{gain}", enable_repeat=1)
    off, on = (loop.phase_metrics(session, part) for part in session.phases[:2])
    topics = loop.recorded(session)
    faults = loop.command_checks(session, topics, 1.0 / 200.0)["faults"]
    oscillates = on["torque_above_3hz_rms_nm"] > loop.OSCILLATION_RMS
    judged = not faults and session.enabled_at is not None
    reduction = 1.0 - on["mean_abs_net_moment_nm"] / off["mean_abs_net_moment_nm"]
    rise = on["tracking_rmse_deg"] - off["tracking_rmse_deg"]
    return {"law": law, "gain": gain, "effort_reduction": reduction,
            "tracking_rise_deg": rise,
            "mean_abs_exo_torque_nm": on["mean_abs_exo_torque_nm"],
            "torque_above_3hz_rms_nm": on["torque_above_3hz_rms_nm"],
            "oscillates": oscillates,
            "faults": faults, "enabled": session.enabled_at is not None, "judged": judged,
            "helpful": judged and not oscillates and reduction > 0.0 and rise <= 1.0}


def stable_range(rows: list[dict]) -> dict:
    """Per law: the judged gains below the first that oscillates, that gain (None: none did),
    the helpful gains among the stable ones, and the gains not judged (faulted runs)."""
    out = {}
    for law in dict.fromkeys(r["law"] for r in rows):
        runs = [r for r in rows if r["law"] == law]
        first_bad = next((r["gain"] for r in runs if r["judged"] and r["oscillates"]), None)
        below = [r for r in runs if first_bad is None or r["gain"] < first_bad]
        out[law] = {"stable_gains": [r["gain"] for r in below if r["judged"]],
                    "oscillates_from": first_bad,
                    "helpful_gains": [r["gain"] for r in below if r["helpful"]],
                    "not_judged": [r["gain"] for r in runs if not r["judged"]]}
    return out


def _table(result: dict) -> str:
    lines = [f"closed-loop gain sweep on {result['machine']}; task {result['task_s']:g} s, "
             "baseline: the unassisted repeat of each run",
             f"{'law':16s}{'gain':>7s}{'effort -%':>11s}{'RMSE +deg':>11s}{'|exo| N·m':>11s}"
             f"{'>3Hz N·m':>9s}  verdict"]
    for r in result["runs"]:
        if not r["judged"]:
            verdict = "not judged: " + ("; ".join(r["faults"])[:70] or "not enabled")
        else:
            verdict = "oscillates" if r["oscillates"] else \
                "stable, helps" if r["helpful"] else "stable"
        lines.append(f"{r['law']:16s}{r['gain']:7g}{100 * r['effort_reduction']:11.1f}"
                     f"{r['tracking_rise_deg']:11.2f}{r['mean_abs_exo_torque_nm']:11.2f}"
                     f"{r['torque_above_3hz_rms_nm']:9.2f}  {verdict}")
    for law, info in result["stable_range"].items():
        end = "no oscillation up to the largest gain tried" if info["oscillates_from"] is None \
            else f"oscillates from {info['oscillates_from']:g}"
        lines.append(f"{law}: stable {info['stable_gains']} ({end}); helpful "
                     f"{info['helpful_gains']}; not judged {info['not_judged']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emg-msk bench closed-loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    add_quick(parser, "moment_fraction 0.3 on a 3 s task only")
    parser.add_argument("--task", type=float, default=8.0, help="task length, s")
    parser.add_argument("--seed", type=int, default=3, help="the wearer's seed")
    parser.add_argument("--laws", nargs="+", choices=sorted(GAINS), default=list(GAINS))
    args = parser.parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    from emg_msk_ros.learning.inference import load_model
    from emg_msk_ros.nodes.common import resolve_model

    model = load_model(resolve_model("knee"))
    sweep = {"moment_fraction": (0.3,)} if args.quick else \
        {law: GAINS[law][1] for law in args.laws}
    task = 3.0 if args.quick else args.task
    with tempfile.TemporaryDirectory(prefix="emg-msk-closed-loop-") as folder:
        rows = [one_run(law, gain, task, args.seed, Path(folder), model)
                for law, gains in sweep.items() for gain in gains]
    result = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
              "task_s": task, "runs": rows, "stable_range": stable_range(rows)}
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
