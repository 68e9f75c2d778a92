"""``emg-msk train``: train the PI-CNN (or the data-only CNN) on session bags, write a model folder.

    emg-msk train --data SESSION [SESSION ...] --out MODEL_DIR [--preset knee]
                  [--val-data SESSION ...] [--physics-weight W | --no-physics] [--seed N] ...

Features come from the causal conditioner (``config/conditioning.yaml`` or ``--conditioning``),
normalised by ``--calibration`` or, by default, each session by its own references
(:func:`.dataset.session_calibration`: a simulated MVC trial for simulated sessions, else the
session's envelope percentile; electrode gains differ between sessions), less each session's
resting level (:func:`.dataset.session_baseline`).
Validation (early stopping) uses ``--val-data`` sessions when given (split by trial), else
alternating time blocks of each training session (split by time). Sessions with force labels
(simulated) train in "forces supervised" mode, others (real recordings, angle only) in
"forces unlabelled" mode, where the physics and Hill terms make the forces meaningful.

The library entry point is :func:`train_on_recordings`; the benchmark uses it directly.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.learning import dataset as ds
from emg_msk_ros.learning.export import (
    ModelError,
    OnnxExport,
    export_onnx,
    plain,
    preset_document,
    save_model_dir,
)
from emg_msk_ros.learning.inference import Estimator, estimate_offline, estimator_for
from emg_msk_ros.learning.metadata import (
    JOINT_STATE_ROWS,
    KIND_EMG,
    KIND_STATE_AIDED,
    ModelMeta,
    ahead_steps,
)
from emg_msk_ros.learning.metrics import score, score_ahead
from emg_msk_ros.learning.model import parameter_count
from emg_msk_ros.learning.runtime import SECTION
from emg_msk_ros.learning.state_data import StateWindowSet
from emg_msk_ros.learning.settings import (
    TrainingSettings,
    load_training_settings,
    window_length,
)
from emg_msk_ros.learning.training import TrainResult, train_model
from emg_msk_ros.learning.windows import WindowSet
from emg_msk_ros.physics.preset import Preset, PresetError, load_preset
from emg_msk_ros.signal.calibration import Calibration
from emg_msk_ros.signal.config import ConditioningSettings, ConfigError, load_settings


DEFAULT_HORIZON_MS = 100.0  # the state-aided model's prediction horizon


@dataclass
class TrainedModel:
    """A trained network with its metadata, ready to use (``estimator``) or save."""

    result: TrainResult
    meta: dict[str, Any]
    estimator: Estimator  # in memory, same code path (ONNX Runtime) as a loaded model
    exported: OnnxExport  # the graph the estimator runs

    def save(self, path: str | Path) -> Path:
        """Write the model folder (model.pt + model.onnx + model.yaml); refused for a
        diagnostic model trained on true activations, which could not run on EMG."""
        if self.meta["training"]["inputs"] != "EMG":
            raise ds.DataError(f"a model trained on {self.meta['training']['inputs']} is a "
                               "diagnostic and is not saved")
        return save_model_dir(path, self.result.model, self.meta, self.exported)


def _segments(trials: list[ds.Trial], val_trials: list[ds.Trial] | None,
              settings: TrainingSettings):
    """(train segments per trial, validation trials, validation segments per trial)."""
    if val_trials:
        return [[(0, len(t))] for t in trials], val_trials, [[(0, len(t))] for t in val_trials]
    splits = [ds.split_by_time(len(t), t.dt, settings.data.val_fraction,
                               settings.data.val_block_s) for t in trials]
    return [s[0] for s in splits], trials, [s[1] for s in splits]


def _session_info(recording: Recording, name: str) -> dict[str, Any]:
    """Name, length and the plain-typed metadata (generator, seed, settings) of a session."""
    keep = {}
    for key, value in recording.metadata.items():
        try:
            keep[key] = plain(value)
        except TypeError:
            continue
    return {"name": name, "duration_s": round(recording.duration, 6),
            "sample_rate": float(recording.sample_rate), "metadata": keep}


def predict_segments(estimator: Estimator, trial: ds.Trial,
                     segments: Sequence[ds.Segment]) -> dict[str, np.ndarray]:
    """Offline estimates for every full window inside the segments; ``index`` into ``trial``."""
    parts = []
    for start, stop in segments:
        state = None if trial.joint_state is None else trial.joint_state[start:stop]
        est = estimate_offline(estimator, trial.excitation[start:stop], trial.baseline, state)
        est["index"] = est["index"] + start
        parts.append(est)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def validation_metrics(estimator: Estimator, trials: Sequence[ds.Trial],
                       segments: Sequence[Sequence[ds.Segment]]) -> dict[str, Any]:
    """Metrics of the estimator over the validation segments of all trials, pooled."""
    pairs = [(predict_segments(estimator, trial, segs), trial)
             for trial, segs in zip(trials, segments) if segs]
    if estimator.needs_joint_state:
        return score_ahead(pairs, estimator.preset, estimator.ahead)
    return score(pairs, estimator.preset)


def in_memory_estimator(exported: OnnxExport, meta: dict[str, Any], preset: Preset,
                        conditioning: ConditioningSettings,
                        calibration: Calibration) -> Estimator:
    """An :class:`Estimator` of a model that is not saved yet: its exported graph in ONNX
    Runtime, as a saved one runs."""
    path = Path("<in memory>")
    return estimator_for(ModelMeta(path=path, meta={**meta, SECTION: exported.section()},
                                   preset=preset, conditioning=conditioning,
                                   calibration=calibration), exported.session(str(path)))


def train_on_recordings(recordings: Sequence[Recording], names: Sequence[str], preset: Preset,
                        settings: TrainingSettings, conditioning: ConditioningSettings, *,
                        physics: bool = True, calibration: Calibration | None = None,
                        val_recordings: Sequence[Recording] = (),
                        val_names: Sequence[str] = (), progress: bool = False,
                        command: str = "", true_activation: bool = False,
                        horizon_ms: float | None = None) -> TrainedModel:
    """Condition the sessions, train, and describe the model (model.yaml content).

    ``physics=False`` trains the data-only baseline (same network, data terms only).
    ``horizon_ms`` trains the state-aided model (:mod:`.state_model`): EMG plus the sessions'
    measured joint states in, the joint predicted that far ahead (None: the EMG-only model).
    ``true_activation`` trains on simulated sessions' true activations instead of their EMG
    (:func:`.dataset.true_activation_trial`; a diagnostic, never a model to deploy).
    """
    if not recordings:
        raise ds.DataError("no training sessions given")
    ahead = None
    if horizon_ms is not None:
        try:
            ahead = ahead_steps(horizon_ms, conditioning.output_rate_hz)
        except ValueError as exc:
            raise ds.DataError(f"--horizon-ms: {exc}") from exc
    rates = {rec.sample_rate for rec in recordings}
    if len(rates) != 1:
        raise ds.DataError(f"training sessions have different sample rates {sorted(rates)} Hz; "
                           "train on sessions of one rate")
    for rec, name in zip([*recordings, *val_recordings], [*names, *val_names]):
        ds.channel_columns(rec, preset.channel_names, name)

    calibrations = []  # each session's, in order (training sessions first)

    def trial(rec: Recording, name: str) -> ds.Trial:
        cal = calibration or ds.session_calibration(rec, preset, conditioning, name)
        calibrations.append(cal)
        made = ds.make_trial(rec, preset, conditioning, cal, name,
                             joint_state=ahead is not None)
        return ds.true_activation_trial(made, rec, preset) if true_activation else made

    trials = [trial(rec, name) for rec, name in zip(recordings, names)]
    val_trials = [trial(rec, name) for rec, name in zip(val_recordings, val_names)]
    stored = calibrations[0]
    window = window_length(settings.model)
    train_segments, val_trials, val_segments = _segments(trials, val_trials, settings)
    if ahead is None:
        train_set = WindowSet(trials, train_segments, window, settings.model.horizon,
                              settings.data.stride)
        val_set = WindowSet(val_trials, val_segments, window, settings.model.horizon)
    else:
        train_set = StateWindowSet(trials, train_segments, window, settings.model.horizon,
                                   ahead, settings.data.stride)
        val_set = StateWindowSet(val_trials, val_segments, window, settings.model.horizon, ahead)
    # the state-aided model trains with its own epochs, patience and Hill weight
    effective = settings if ahead is None else settings.state_aided()
    bar = tqdm(total=effective.optim.max_epochs, desc="train", unit="epoch",
               disable=not progress, file=sys.stderr)

    def report(epoch: int, record: dict) -> None:
        bar.update(1)
        bar.set_postfix(train=f"{record['train_loss']:.4f}", val=f"{record['val_loss']:.4f}",
                        lam=f"{record['lambda']:.2g}")

    try:
        result = train_model(trials, train_set, val_set, preset, effective, physics=physics,
                             progress=report)
    finally:
        bar.close()
    meta = {
        "kind": KIND_EMG if ahead is None else KIND_STATE_AIDED,
        "channel_names": list(preset.channel_names),
        "sample_rate": float(recordings[0].sample_rate),
        "model_rate": float(conditioning.output_rate_hz),
        "window": window,
        "horizon": settings.model.horizon,
        "architecture": {"type": "causal dilated 1-D CNN (emg_msk_ros.learning.model.PICNN)",
                         "hidden": settings.model.hidden, "kernel": settings.model.kernel,
                         "levels": settings.model.levels,
                         "parameters": parameter_count(result.model)},
        "joint": preset.joint.name,
        "muscles": list(preset.muscle_names),
        "preset": {"name": preset.name, "sha256": preset.sha256,
                   "document": preset_document(preset)},
        "conditioning": conditioning.to_mapping(),
        "calibration": stored.to_mapping(),
        "normalisation": {**result.scales.to_mapping(),
                          "excitation_baseline": [float(b) for b in trials[0].baseline]},
        "physics": {"enabled": physics, "forces_labelled": result.forces_labelled,
                    "physics_weight": settings.loss.physics_weight if physics else 0.0,
                    "learned": result.terms.learned()},
        "training": {
            "command": command,
            "seed": settings.seed,
            "mode": "forces supervised" if result.forces_labelled else "forces unlabelled",
            "inputs": "true activations" if true_activation else "EMG",
            "split": "by trial" if val_recordings else "by time",
            # each session's references (model.yaml keeps the first session's: a new session
            # needs its own MVC calibration) and resting baseline (normalisation)
            "calibration": [cal.source for cal in calibrations],
            "data_hash": ds.recordings_hash(recordings),
            "sessions": [_session_info(r, n) for r, n in zip(recordings, names)],
            "validation_sessions": [_session_info(r, n)
                                    for r, n in zip(val_recordings, val_names)],
            "train_windows": len(train_set), "val_windows": len(val_set),
            "epochs": len(result.history), "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason, "seconds": round(result.seconds, 2),
            "threads": settings.optim.threads, "torch_version": str(torch.__version__),
            "settings": settings.to_mapping(),
        },
    }
    if ahead is not None:
        meta["architecture"]["type"] = ("causal dilated 1-D CNN over excitation and joint state "
                                        "(emg_msk_ros.learning.state_model.StateAidedPICNN)")
        fit = result.motion_fit
        meta["ahead"] = {"steps": ahead, "horizon_ms": float(horizon_ms), "motion_branch": {
            "kernel": fit["kernel"], "gamma": fit["gamma"], "ridge": fit["ridge"],
            "cv_rmse_deg": round(math.degrees(fit["cv_rmse_rad"]), 4),
            "cv_constant_velocity_rmse_deg": round(
                math.degrees(fit["cv_constant_velocity_rmse_rad"]), 4)}}
        meta["joint_state_input"] = {
            "rows": JOINT_STATE_ROWS, "units": ["rad", "rad/s"],
            "alignment": "newest reading at or before each step's stamp"}
    exported = export_onnx(result.model)
    estimator = in_memory_estimator(exported, meta, preset, conditioning, stored)
    meta["metrics"] = {"validation": validation_metrics(estimator, val_trials, val_segments)}
    if ahead is not None:  # the motion branch was fitted on the validation windows too
        meta["metrics"]["validation"]["angle_ahead"]["in_sample_for_motion_branch"] = True
    return TrainedModel(result=result, meta=meta, estimator=estimator, exported=exported)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``emg-msk train``."""
    parser.add_argument("--data", nargs="+", required=True, metavar="SESSION",
                        help="training session bags (emg-msk simulate / import)")
    parser.add_argument("--out", required=True, help="model folder to create")
    parser.add_argument("--preset", help="musculoskeletal preset name or YAML path "
                        "(default: the sessions' metadata 'preset')")
    parser.add_argument("--val-data", nargs="+", default=[], metavar="SESSION",
                        help="validation sessions (default: time blocks of the training ones)")
    parser.add_argument("--config", help="training settings YAML (default config/training.yaml)")
    parser.add_argument("--conditioning", help="conditioning YAML (default "
                        "config/conditioning.yaml)")
    parser.add_argument("--calibration", help="MVC calibration YAML for all sessions "
                        "(default: each session calibrated from its own envelope)")
    physics = parser.add_mutually_exclusive_group()
    physics.add_argument("--physics-weight", type=float, help="lambda of the equation-of-motion "
                         "residual (overrides the settings)")
    physics.add_argument("--no-physics", action="store_true",
                         help="data-only CNN (the baseline): no physics terms")
    parser.add_argument("--hill-weight", type=float, help="weight of the Hill-consistency term "
                        "(overrides the settings for the sessions' mode and model kind)")
    parser.add_argument("--inputs", choices=("emg", "emg+state"), default="emg",
                        help="emg: the EMG-only PI-CNN; emg+state: the state-aided PI-CNN, "
                        "which also reads the sessions' measured joint states (joint_states) "
                        "and predicts the joint --horizon-ms ahead")
    parser.add_argument("--horizon-ms", type=float, default=None,
                        help="prediction horizon of the state-aided model, ms (a whole number "
                        f"of model steps; default {DEFAULT_HORIZON_MS:g})")
    parser.add_argument("--seed", type=int, help="random seed (overrides the settings)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (overrides the settings)")
    parser.add_argument("--threads", type=int, help="torch threads (overrides the settings)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    settings = load_training_settings(args.config)
    if args.seed is not None:
        settings = settings.replace(seed=args.seed)
    if args.physics_weight is not None:
        settings = settings.replace("loss", physics_weight=args.physics_weight)
    if args.hill_weight is not None:
        settings = settings.replace("loss", hill_weight=args.hill_weight,
                                    hill_weight_unlabelled=args.hill_weight,
                                    state_aided_hill_weight=args.hill_weight)
    if args.epochs is not None:
        settings = settings.replace("optim", max_epochs=args.epochs,
                                    state_aided_max_epochs=args.epochs)
    if args.threads is not None:
        settings = settings.replace("optim", threads=args.threads)
    return settings


def command_line(args: argparse.Namespace) -> str:
    """The ``emg-msk train`` command line of this run."""
    words = ["emg-msk", "train", "--data", *args.data, "--out", args.out]
    if args.val_data:
        words += ["--val-data", *args.val_data]
    options = (("--preset", args.preset), ("--config", args.config),
               ("--conditioning", args.conditioning), ("--calibration", args.calibration),
               ("--physics-weight", args.physics_weight), ("--hill-weight", args.hill_weight),
               ("--seed", args.seed), ("--epochs", args.epochs), ("--threads", args.threads))
    for flag, value in options:
        if value is not None:
            words += [flag, str(value)]
    if args.no_physics:
        words.append("--no-physics")
    if args.inputs != "emg":
        words += ["--inputs", args.inputs, "--horizon-ms", f"{_horizon(args):g}"]
    return shlex.join(words)


def _horizon(args: argparse.Namespace) -> float | None:
    """The state-aided model's horizon (ms), None for the EMG-only model; ValueError for a
    horizon given to the EMG-only model."""
    if args.inputs == "emg":
        if args.horizon_ms is not None:
            raise ValueError("--horizon-ms needs --inputs emg+state")
        return None
    return DEFAULT_HORIZON_MS if args.horizon_ms is None else args.horizon_ms


def _preset_for(args: argparse.Namespace, recordings: Sequence[Recording]) -> Preset:
    if args.preset:
        return load_preset(args.preset)
    named = {rec.metadata.get("preset") for rec in recordings}
    if len(named) != 1 or None in named:
        raise ds.DataError("give --preset: the sessions do not all name one preset in their "
                           f"metadata (found {sorted(map(str, named))})")
    return load_preset(named.pop())


def run(args: argparse.Namespace) -> int:
    """Train and write the model folder; errors are printed with what is wrong."""
    from emg_msk_ros.io.session_bag import SessionError, read_recording

    out = Path(args.out)
    started = time.perf_counter()
    try:
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not empty; choose a new model folder")
        horizon_ms = _horizon(args)
        settings = _settings_from_args(args)
        conditioning = load_settings(args.conditioning)
        calibration = Calibration.load(args.calibration) if args.calibration else None
        recordings = [read_recording(p) for p in args.data]
        val_recordings = [read_recording(p) for p in args.val_data]
        preset = _preset_for(args, recordings)
        trained = train_on_recordings(
            recordings, list(args.data), preset, settings, conditioning,
            physics=not args.no_physics, calibration=calibration,
            val_recordings=val_recordings, val_names=list(args.val_data),
            progress=not args.no_progress, command=command_line(args),
            horizon_ms=horizon_ms)
        trained.save(out)
    except (ds.DataError, ConfigError, PresetError, ModelError, SessionError, FileExistsError,
            FileNotFoundError, ValueError) as exc:
        print(f"emg-msk train: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({trained.meta['architecture']['parameters']} parameters, "
          f"{len(trained.result.history)} epochs, {time.perf_counter() - started:.1f} s; "
          f"{trained.result.stop_reason})")
    print(validation_line(trained.meta, settings))
    return 0


def validation_line(meta: dict[str, Any], settings: TrainingSettings) -> str:
    """The validation score in words: the angle RMSE beside the range of motion it is made
    over (a nearly still block makes R², kept in model.yaml, meaningless) and Pearson r; for a
    state-aided model also the angle ahead beside constant-velocity extrapolation."""
    metrics = meta["metrics"]["validation"]
    angle = metrics["angle"]
    where = ("the --val-data sessions" if meta["training"]["split"] == "by trial" else
             f"{settings.data.val_fraction:.0%} of the training sessions, held out in "
             f"{settings.data.val_block_s:g} s blocks")
    line = (f"validation on {where}: angle RMSE {angle['rmse_deg']:.2f} deg over a "
            f"{angle['range_deg']:.1f} deg range of motion, r {angle['r']:.2f}; physics "
            f"residual {metrics['physics_residual_rms']:.3g} N m")
    if "angle_ahead" in metrics:
        ahead, branch = metrics["angle_ahead"], meta["ahead"]["motion_branch"]
        line += (f"\n{ahead['horizon_ms']:g} ms ahead, cross-validated over the training and "
                 f"validation windows the motion branch was fitted on: angle RMSE "
                 f"{branch['cv_rmse_deg']:.2f} deg (constant-velocity extrapolation "
                 f"{branch['cv_constant_velocity_rmse_deg']:.2f} deg); on the validation "
                 f"windows, in-sample for the branch: {ahead['rmse_deg']:.2f} deg")
    return line
