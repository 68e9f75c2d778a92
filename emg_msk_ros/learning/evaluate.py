"""``emg-msk evaluate``: score a model folder on a session bag.

    emg-msk evaluate --model MODEL_DIR --data SESSION [--json] [--plots DIR]

The session is conditioned with the model's own conditioner settings and calibration (or
``--calibration FILE``, or ``--recalibrate`` from the session's own envelope; simulated
sessions carry their electrode gains and are calibrated by simulated MVC and rest trials). The
resting baseline removed from the excitation is the calibration's rest levels when it has them
(a rest trial: the model's own calibration has its first training session's), otherwise the
session's own (:func:`.dataset.session_baseline`). Every full window is estimated
(:func:`.inference.estimate_offline`), and the estimates are compared with the session's truth
(:func:`.metrics.score`): RMSE, NRMSE, R², Pearson r of the angle, of each muscle force and of
the net moment (when the session has them), and the RMS physics residual. A state-aided model
(which reads the session's measured joint states, ``/joint_states``) adds ``angle_ahead``: its
angle RMSE at the horizon beside constant-velocity extrapolation's from the last measured state
on the same samples (:func:`.metrics.score_ahead`). Plots of prediction
against truth go to ``--plots`` (default ``./evaluation_<session name>/``) as PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from emg_msk_ros.learning.dataset import DataError, Trial, make_trial, session_calibration
from emg_msk_ros.learning.inference import Estimator, estimate_offline, load_model
from emg_msk_ros.learning.metadata import ModelError
from emg_msk_ros.learning.metrics import score, score_ahead
from emg_msk_ros.signal.calibration import Calibration
from emg_msk_ros.signal.config import ConfigError


def evaluate_trial(estimator: Estimator, trial: Trial) -> tuple[dict[str, np.ndarray], dict]:
    """(estimates, metrics) of the estimator over a whole trial."""
    predictions = estimate_offline(estimator, trial.excitation, trial.baseline,
                                   trial.joint_state)
    if len(predictions["index"]) < 4:
        raise DataError(f"{trial.name}: {len(trial)} samples at {1 / trial.dt:g} Hz are too few "
                        f"for a window of {estimator.window} steps")
    if estimator.needs_joint_state:
        return predictions, score_ahead([(predictions, trial)], estimator.preset,
                                        estimator.ahead)
    return predictions, score([(predictions, trial)], estimator.preset)


def plot(trial: Trial, predictions: dict[str, np.ndarray], muscle_names: list[str],
         folder: Path, horizon_s: float = 0.0) -> list[Path]:
    """Write angle.png, forces.png and moment.png (prediction vs truth); return the paths.
    A state-aided model's ``angle_ahead`` is drawn ``horizon_s`` s after its estimate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    index = predictions["index"]
    t = trial.time[index] - trial.time[0]
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(t, np.degrees(trial.angle[index]), "k", lw=1.2, label="truth")
    ax.plot(t, np.degrees(predictions["angle"]), "C3", lw=1.0, label="estimate")
    if "angle_ahead" in predictions:  # a state-aided model's prediction, at the time it is for
        ax.plot(t + horizon_s, np.degrees(predictions["angle_ahead"]), "C0", lw=1.0,
                label=f"predicted {1000 * horizon_s:g} ms ahead")
    ax.set(xlabel="time (s)", ylabel="angle (deg)", title=f"{trial.name}: joint angle")
    ax.legend(loc="upper right")
    save(fig, "angle.png")

    rows = len(muscle_names)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.9 * rows), sharex=True, squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[:, 0], muscle_names)):
        if trial.force is not None:
            ax.plot(t, trial.force[index, i], "k", lw=1.2, label="truth")
        ax.plot(t, predictions["force"][:, i], "C0", lw=1.0, label="estimate")
        ax.set_ylabel(f"{name}\n(N)")
    axes[0, 0].legend(loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    save(fig, "forces.png")

    fig, ax = plt.subplots(figsize=(10, 3.5))
    if trial.moment is not None:
        ax.plot(t, trial.moment[index], "k", lw=1.2, label="truth")
    ax.plot(t, predictions["net_moment"], "C2", lw=1.0, label="estimate")
    ax.set(xlabel="time (s)", ylabel="net muscle moment (N m)", title="net muscle moment")
    ax.legend(loc="upper right")
    save(fig, "moment.png")
    return written


def format_table(metrics: dict[str, Any]) -> str:
    """Metrics as an aligned text table."""
    lines = [f"{'quantity':<24}{'RMSE':>12}{'NRMSE':>9}{'R2':>8}{'r':>8}"]

    def row(label, m, unit, factor=1.0):
        lines.append(f"{label:<24}{m['rmse'] * factor:>9.3g} {unit:<2}{m['nrmse']:>9.3f}"
                     f"{m['r2']:>8.3f}{m['r']:>8.3f}")

    row("angle", metrics["angle"], "°", math.degrees(1.0))
    for name, m in metrics.get("force", {}).items():
        row(f"force {name}", m, "N")
    if "moment" in metrics:
        row("net moment", metrics["moment"], "Nm")
    lines.append(f"physics residual RMS: {metrics['physics_residual_rms']:.3g} N m"
                 + (f" (truth: {metrics['physics_residual_rms_truth']:.3g} N m)"
                    if "physics_residual_rms_truth" in metrics else ""))
    lines.append(f"estimates: {metrics['samples']}")
    if "angle_ahead" in metrics:
        ahead = metrics["angle_ahead"]
        lines.append(f"angle {ahead['horizon_ms']:g} ms ahead: RMSE {ahead['rmse_deg']:.3g}° "
                     f"(constant-velocity extrapolation from the last measured state: "
                     f"{ahead['constant_velocity_rmse_deg']:.3g}°, ratio "
                     f"{ahead['ratio_to_constant_velocity']:.2f}), R2 {ahead['r2']:.3f}, "
                     f"{ahead['samples']} estimates")
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """Metrics with NaN (undefined, e.g. R² of a constant) as null, for strict JSON."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``emg-msk evaluate``."""
    parser.add_argument("--model", required=True, help="model folder (emg-msk train)")
    parser.add_argument("--data", required=True, help="session bag with ground truth")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calibration", help="MVC calibration YAML for this session "
                             "(default: the model's)")
    calibration.add_argument("--recalibrate", action="store_true",
                             help="calibrate from this session's own envelope (as training "
                             "does for sessions without an MVC trial)")
    parser.add_argument("--plots", help="folder for the PNG plots "
                        "(default ./evaluation_<session name>)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics; errors are printed with what is wrong."""
    from emg_msk_ros.io.session_bag import SessionError, read_recording

    try:
        estimator = load_model(args.model)
        recording = read_recording(args.data)
        if args.calibration:
            calibration = Calibration.load(args.calibration)
        elif args.recalibrate or "emg_gain" in recording.metadata:
            calibration = session_calibration(recording, estimator.preset,
                                              estimator.conditioner_settings, str(args.data))
        else:
            calibration = estimator.calibration
        trial = make_trial(recording, estimator.preset, estimator.conditioner_settings,
                           calibration, str(args.data),
                           joint_state=estimator.needs_joint_state)
        predictions, metrics = evaluate_trial(estimator, trial)
    except (ModelError, DataError, SessionError, ConfigError, FileNotFoundError) as exc:
        print(f"emg-msk evaluate: {exc}", file=sys.stderr)
        return 2
    if recording.sample_rate != estimator.sample_rate:
        print(f"emg-msk evaluate: note: the session is sampled at {recording.sample_rate:g} Hz, "
              f"the model was trained at {estimator.sample_rate:g} Hz", file=sys.stderr)
    folder = Path(args.plots or f"evaluation_{Path(args.data).name}")
    plots = plot(trial, predictions, estimator.muscle_names, folder,
                 getattr(estimator, "horizon_s", 0.0))
    if args.json:
        print(json.dumps(jsonable({"model": str(args.model), "session": str(args.data),
                                   "metrics": metrics, "plots": [str(p) for p in plots]}),
                         indent=2))
    else:
        print(f"model {args.model} on {args.data}")
        print(format_table(metrics))
        print(f"plots: {', '.join(str(p) for p in plots)}")
    return 0
