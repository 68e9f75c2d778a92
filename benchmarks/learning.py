"""PI-CNN against the data-only CNN and the EMG-driven physics model, on held-out simulated trials.

    emg-msk bench learning [--json] [--preset knee|wrist] [--quick] [--work DIR] [--ceiling]
                           [--seeds N]

For each preset, sessions are simulated with the project's simulator (``simulate_session``,
the code behind ``emg-msk simulate``; cached as bags in ``--work``): training sessions with
movements up to 1.5 rad/s, held-out test sessions of the same kind (other seeds), and held-out
sessions of fast movements (1.5-4 rad/s, faster than anything in training). Three regimes:

- ``plenty``: trained on five 60 s sessions (300 s; the default models' data), tested on the
  held-out trials;
- ``little``: trained on one 30 s session, tested on the same trials;
- ``faster``: the ``plenty`` models, tested on the fast trials.

Three methods, trained and scored by the same code on the same windows: the PI-CNN
(``emg-msk train`` defaults), the same network without physics terms (``--no-physics``), and
the preset's EMG-driven model calibrated on the same training trial
(:mod:`emg_msk_ros.physics.baseline`, on the first training session; forward integration from
the true initial angle). All use the same causal excitations, calibrated per session by a
simulated MVC trial; the networks also remove each session's resting level, measured on a
simulated rest trial (:func:`emg_msk_ros.learning.dataset.model_input`), while the physics
model takes the MVC-normalised excitation as EMG-driven models do. Scores cover the same
samples for every method (from the CNN's first full window on).

``--seeds N`` trains each network N times (training seeds s, s + 1, ... from
``training.seed``) and reports the mean over the runs, with the spread (standard deviation)
of the angle RMSE: a PI-CNN-vs-CNN difference smaller than the spread is not a finding (with
``--seeds 3`` the wrist's little-data CNN scored 13.0, 16.3 and 13.0 deg on the same trials). Targets are
judged on the means; speed is timed on the first run. The physics baseline has no seed.

``--ceiling`` adds a diagnostic regime: both networks trained and tested (plenty, held-out
trials) on the simulator's true muscle activations instead of the EMG, i.e. with no
EMG-processing error. The gap between it and ``plenty`` is what better EMG processing could
buy; its own error is the network's.

Speed, on one CPU thread (torch, and numpy's BLAS: the benchmark reruns itself with
``OPENBLAS_NUM_THREADS=1`` etc.): one estimate (window -> angle, velocity, forces, moments,
activations) with :meth:`Estimator.predict`, and one step of the EMG-driven model at the model
rate; median and p99 over repeated calls after a warm-up. Training time is wall-clock on
``training.optim.threads`` threads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from emg_msk_ros.benchmarking import add_quick, rerun_single_threaded
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.session_bag import read_recording, write_recording
from emg_msk_ros.learning import dataset as ds
from emg_msk_ros.learning.evaluate import jsonable
from emg_msk_ros.learning.inference import Estimator, estimate_offline
from emg_msk_ros.learning.metrics import score
from emg_msk_ros.learning.settings import load_training_settings
from emg_msk_ros.learning.train import train_on_recordings
from emg_msk_ros.physics.baseline import EmgDrivenModel, calibrate
from emg_msk_ros.physics.motions import MotionSettings
from emg_msk_ros.physics.preset import Preset, load_preset
from emg_msk_ros.physics.simulate import simulate_session
from emg_msk_ros.physics.synth_emg import EmgSynthSettings
from emg_msk_ros.signal.config import load_settings

TRAIN_SPEED = 1.5  # rad/s, fastest movement in training and "plenty"/"little" test sessions
# name -> (duration s, seed, motion); "quick" (--quick) is a smoke run of every step, not results.
SESSIONS = {
    "full": {"plenty": [(60.0, seed, "slow-mixed") for seed in range(11, 16)],
             "little": [(30.0, 2, "slow-mixed")],
             "test": [(60.0, 101, "slow-mixed"), (60.0, 102, "slow-mixed")],
             "fast": [(60.0, 201, "fast"), (60.0, 202, "fast")]},
    "quick": {"plenty": [(5.0, 11, "slow-mixed")], "little": [(5.0, 2, "slow-mixed")],
              "test": [(3.0, 101, "slow-mixed")], "fast": [(3.0, 201, "fast")]},
}
TIMING_CALLS = {"full": 3000, "quick": 50}
QUICK_TRAINING = {"max_epochs": 1, "min_epoch_batches": 2}  # optim settings of a smoke run
QUICK_MIN_TRAIN_S = 1.0  # s of training windows a smoke run's 5 s sessions must give
CALIBRATION_ITERATIONS = {"full": 50, "quick": 3}  # physics model's calibration (the default)
METHODS = ("PI-CNN", "CNN", "physics")


def motion(kind: str) -> MotionSettings:
    """Movements up to TRAIN_SPEED ("slow-mixed") or the simulator's fast regime."""
    if kind == "fast":
        return MotionSettings(regime="fast")
    return MotionSettings(regime="mixed", max_speed=TRAIN_SPEED)


def simulator_tag(kind: str) -> str:
    """Short hash of the simulator's settings for sessions of ``kind`` (motion and EMG, with
    their defaults), so that cached bags from other settings are not reused."""
    settings = repr((motion(kind), EmgSynthSettings()))
    return hashlib.sha256(settings.encode()).hexdigest()[:8]


def session(preset: Preset, work: Path | None, spec: tuple[float, int, str]) -> Recording:
    """A simulated session, read from the bag cache or simulated and written there first
    (``work`` None: simulated, not cached)."""
    duration, seed, kind = spec
    if work is None:
        return simulate_session(preset, duration, seed, motion=motion(kind))
    path = work / f"{preset.name}-{kind}-{duration:g}s-seed{seed}-{simulator_tag(kind)}"
    if not path.exists():
        write_recording(path, simulate_session(preset, duration, seed, motion=motion(kind)))
    return read_recording(path)


def percentiles_ms(call, arguments, calls: int) -> tuple[float, float]:
    """(median, p99) in ms of ``call(argument)`` over ``calls`` calls, after a warm-up."""
    for argument in arguments[:50]:
        call(argument)
    times = np.empty(calls)
    for i in range(calls):
        argument = arguments[i % len(arguments)]
        start = time.perf_counter()
        call(argument)
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)


class Fitted(NamedTuple):
    """The three methods fitted on one training set (the networks once per training seed)."""

    pi: list[Estimator]
    cnn: list[Estimator]
    physics: Preset  # the calibrated preset of the EMG-driven model
    train_seconds: dict[str, float]


def train_networks(recordings: list[Recording], preset: Preset, settings, conditioning,
                   runs: int, true_activation: bool = False
                   ) -> tuple[dict[str, list[Estimator]], dict]:
    """The PI-CNN and the data-only CNN trained on the sessions ``runs`` times each (training
    seeds settings.seed, settings.seed + 1, ...), and their mean training times (s)."""
    names = [f"train seed {rec.metadata['seed']}" for rec in recordings]
    nets, seconds = {}, {}
    for name, physics in (("PI-CNN", True), ("CNN", False)):
        trained = [train_on_recordings(recordings, names, preset,
                                       settings.replace(seed=settings.seed + run), conditioning,
                                       physics=physics, true_activation=true_activation)
                   for run in range(runs)]
        nets[name] = [t.estimator for t in trained]
        seconds[name] = float(np.mean([t.result.seconds for t in trained]))
    return nets, seconds


def fit(recordings: list[Recording], preset: Preset, settings, conditioning,
        runs: int, calibration_iterations: int) -> Fitted:
    """Train both networks and calibrate the physics model on the training sessions."""
    nets, seconds = train_networks(recordings, preset, settings, conditioning, runs)
    names = [f"train seed {rec.metadata['seed']}" for rec in recordings]
    # the EMG-driven model is calibrated on one training trial, as CEINMS-style tools are
    # (sessions cannot be joined: inverse dynamics across the seam would be meaningless)
    trial = ds.make_trial(recordings[0], preset, conditioning,
                          ds.session_calibration(recordings[0], preset, conditioning, names[0]),
                          names[0])
    start = time.perf_counter()
    calibrated = calibrate(preset, trial.excitation, trial.angle, trial.dt,
                           max_iterations=calibration_iterations).preset
    seconds["physics"] = time.perf_counter() - start
    return Fitted(pi=nets["PI-CNN"], cnn=nets["CNN"], physics=calibrated,
                  train_seconds=seconds)


def physics_predictions(calibrated: Preset, trial: ds.Trial) -> dict[str, np.ndarray]:
    """EMG-driven model over a trial, started at the true initial angle (at rest)."""
    model = EmgDrivenModel(calibrated, trial.dt, theta0=float(trial.angle[0]),
                           excitation0=trial.excitation[0])
    result = model.run(trial.excitation)
    return {"index": np.arange(len(trial)), "angle": result.angle, "force": result.force,
            "net_moment": result.moment.sum(axis=1)}


def restrict(predictions: dict[str, np.ndarray], first: int) -> dict[str, np.ndarray]:
    """Predictions for trial samples ``first`` and later."""
    keep = predictions["index"] >= first
    return {key: value[keep] for key, value in predictions.items()}


def score_networks(nets: dict[str, list[Estimator]], trials: list[ds.Trial], preset: Preset
                   ) -> dict[str, list[dict]]:
    """Metrics of each network run over the test trials."""
    return {name: [score([(estimate_offline(estimator, trial.excitation, trial.baseline), trial)
                          for trial in trials], preset) for estimator in runs]
            for name, runs in nets.items()}


def score_methods(fitted: Fitted, trials: list[ds.Trial], preset: Preset
                  ) -> dict[str, list[dict]]:
    """Metrics of the three methods (per run) over the same samples of the test trials."""
    first = fitted.pi[0].window - 1
    physics = [(restrict(physics_predictions(fitted.physics, trial), first), trial)
               for trial in trials]
    return {**score_networks({"PI-CNN": fitted.pi, "CNN": fitted.cnn}, trials, preset),
            "physics": [score(physics, preset)]}


def summary_row(regime: str, method: str, runs: list[dict], speed: tuple[float, float],
                train_s: float) -> dict:
    """One table row: each metric's mean over the runs, and the spread of the angle RMSE
    (sample standard deviation, deg; nan for a single run)."""
    rmse = [m["angle"]["rmse_deg"] for m in runs]

    def mean(pick) -> float:
        return float(np.mean([pick(m) for m in runs]))

    return {
        "regime": regime, "method": method,
        "angle_rmse_deg": float(np.mean(rmse)),
        "angle_rmse_sd_deg": float(np.std(rmse, ddof=1)) if len(runs) > 1 else math.nan,
        "angle_rmse_by_run": rmse,
        "angle_r2": mean(lambda m: m["angle"]["r2"]),
        "force_nrmse": mean(lambda m: m["force_nrmse_mean"]),
        "moment_nrmse": mean(lambda m: m["moment"]["nrmse"]),
        "physics_residual_nm": mean(lambda m: m["physics_residual_rms"]),
        "infer_p50_ms": speed[0], "infer_p99_ms": speed[1], "train_s": train_s,
    }


def timings(fitted: Fitted, trial: ds.Trial, calls: int) -> dict[str, tuple[float, float]]:
    """(median, p99) ms per estimate of each method, one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w = fitted.pi[0].window
        windows = [np.ascontiguousarray(trial.excitation[j:j + w])
                   for j in range(0, len(trial) - w, 7)]
        out = {"PI-CNN": percentiles_ms(fitted.pi[0].predict, windows, calls),
               "CNN": percentiles_ms(fitted.cnn[0].predict, windows, calls)}
        model = EmgDrivenModel(fitted.physics, trial.dt, theta0=float(trial.angle[0]),
                               excitation0=trial.excitation[0])
        out["physics"] = percentiles_ms(model.step, list(trial.excitation), calls)
    finally:
        torch.set_num_threads(before)
    return out


def run_preset(name: str, work: Path | None, size: str, log, ceiling: bool = False,
               runs: int = 1) -> dict:
    """All regimes and methods for one preset, the networks trained ``runs`` times each;
    ``ceiling`` adds the networks trained and tested on the true activations (regime
    ``ceiling``: no EMG processing error)."""
    preset = load_preset(name)
    conditioning = load_settings()
    settings = load_training_settings()
    if size == "quick":
        settings = settings.replace("optim", **QUICK_TRAINING).replace(
            "data", min_train_s=QUICK_MIN_TRAIN_S)
    spec = SESSIONS[size]
    log(f"{name}: simulating sessions" + (f" (cached in {work})" if work else ""))
    plenty = [session(preset, work, item) for item in spec["plenty"]]
    little = [session(preset, work, item) for item in spec["little"]]
    trials = {}
    for group in ("test", "fast"):
        trials[group] = []
        for item in spec[group]:
            rec = session(preset, work, item)
            cal = ds.session_calibration(rec, preset, conditioning, f"seed {item[1]}")
            trials[group].append(ds.make_trial(rec, preset, conditioning, cal,
                                               f"{group} seed {item[1]}"))
            if ceiling and group == "test":
                trials.setdefault("ceiling", []).append(
                    ds.true_activation_trial(trials[group][-1], rec, preset))
    log(f"{name}: training on {sum(r.duration for r in plenty):g} s (plenty)")
    iterations = CALIBRATION_ITERATIONS[size]
    plenty_fit = fit(plenty, preset, settings, conditioning, runs, iterations)
    log(f"{name}: training on {sum(r.duration for r in little):g} s (little)")
    little_fit = fit(little, preset, settings, conditioning, runs, iterations)
    log(f"{name}: scoring and timing")
    regimes = {"plenty": score_methods(plenty_fit, trials["test"], preset),
               "little": score_methods(little_fit, trials["test"], preset),
               "faster": score_methods(plenty_fit, trials["fast"], preset)}
    speed = timings(plenty_fit, trials["test"][0], TIMING_CALLS[size])
    seconds = {"plenty": plenty_fit.train_seconds, "little": little_fit.train_seconds,
               "faster": plenty_fit.train_seconds}
    if ceiling:
        log(f"{name}: training on the true activations of the plenty sessions (ceiling)")
        nets, seconds["ceiling"] = train_networks(plenty, preset, settings, conditioning, runs,
                                                  true_activation=True)
        regimes["ceiling"] = score_networks(nets, trials["ceiling"], preset)
    rows = [summary_row(regime, method, runs_of_method,
                        speed[method] if regime != "ceiling" else (math.nan, math.nan),
                        seconds[regime][method])
            for regime, by_method in regimes.items()
            for method, runs_of_method in by_method.items()]
    truth_residual = regimes["plenty"]["PI-CNN"][0]["physics_residual_rms_truth"]
    return {"preset": name, "runs": runs, "rows": rows, "truth_residual_nm": truth_residual,
            "sessions": {k: v for k, v in spec.items()}, "threads_training":
            settings.optim.threads, "checks": checks(rows)}


def _row(rows, regime, method):
    return next(r for r in rows if r["regime"] == regime and r["method"] == method)


def checks(rows: list[dict]) -> list[dict]:
    """The issue's targets, each with the measured value and whether it is met."""
    pi, cnn, phys = (_row(rows, "plenty", m) for m in METHODS)
    out = [
        ("PI-CNN angle RMSE <= 3 deg (plenty)", pi["angle_rmse_deg"], pi["angle_rmse_deg"] <= 3),
        ("PI-CNN angle R2 >= 0.97 (plenty)", pi["angle_r2"], pi["angle_r2"] >= 0.97),
        ("PI-CNN force NRMSE <= 10 % (plenty)", pi["force_nrmse"], pi["force_nrmse"] <= 0.10),
        ("PI-CNN residual <= CNN residual / 5 (plenty)",
         pi["physics_residual_nm"] / cnn["physics_residual_nm"],
         pi["physics_residual_nm"] <= cnn["physics_residual_nm"] / 5),
        ("PI-CNN inference p99 <= 1 ms", pi["infer_p99_ms"], pi["infer_p99_ms"] <= 1.0),
        ("physics / PI-CNN time per estimate >= 20 (median)",
         phys["infer_p50_ms"] / pi["infer_p50_ms"],
         phys["infer_p50_ms"] >= 20 * pi["infer_p50_ms"]),
        ("PI-CNN training <= 180 s (plenty)", pi["train_s"], pi["train_s"] <= 180),
    ]
    for regime in ("little", "faster"):
        a, b = _row(rows, regime, "PI-CNN"), _row(rows, regime, "CNN")
        out.append((f"PI-CNN angle RMSE <= CNN's ({regime})",
                    a["angle_rmse_deg"] - b["angle_rmse_deg"],
                    a["angle_rmse_deg"] <= b["angle_rmse_deg"]))
    return [{"target": t, "value": float(v), "met": bool(ok)} for t, v, ok in out]


def format_report(result: dict) -> str:
    """One table per preset, then the targets."""
    head = (f"{'regime':<8}{'method':<9}{'angle RMSE':>11}{'sd':>6}{'angle R2':>9}"
            f"{'force NRMSE':>12}"
            f"{'moment NRMSE':>13}{'residual':>10}{'infer p50':>10}{'infer p99':>10}"
            f"{'train':>8}")
    units = (f"{'':<17}{'deg':>11}{'deg':>6}{'':>9}{'':>12}{'':>13}{'N m':>10}{'ms':>10}"
             f"{'ms':>10}{'s':>8}")
    lines = [f"== {result['preset']}: held-out simulated trials, networks trained "
             f"{result['runs']}x (mean; sd of the angle RMSE over the runs; truth residual "
             f"{result['truth_residual_nm']:.3g} N m) ==", head, units]
    for r in result["rows"]:
        sd = "" if math.isnan(r["angle_rmse_sd_deg"]) else f"{r['angle_rmse_sd_deg']:.2f}"
        lines.append(
            f"{r['regime']:<8}{r['method']:<9}{r['angle_rmse_deg']:>11.2f}{sd:>6}"
            f"{r['angle_r2']:>9.3f}"
            f"{r['force_nrmse']:>12.3f}{r['moment_nrmse']:>13.3f}"
            f"{r['physics_residual_nm']:>10.3g}{r['infer_p50_ms']:>10.3f}"
            f"{r['infer_p99_ms']:>10.3f}{r['train_s']:>8.1f}")
    lines.append("targets:")
    for c in result["checks"]:
        lines.append(f"  [{'met' if c['met'] else 'MISSED'}] {c['target']}: {c['value']:.3g}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``emg-msk bench learning``."""
    parser = argparse.ArgumentParser(prog="emg-msk bench learning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["knee", "wrist"], action="append",
                        help="preset(s) to run (default both; knee with --quick)")
    add_quick(parser, "5 s sessions (not cached), one epoch, 3 calibration iterations, the "
              "knee preset")
    parser.add_argument("--work", default="out/bench_learning",
                        help="folder for the simulated session bags (reused between runs; "
                             "--quick simulates without caching)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--ceiling", action="store_true",
                        help="also train and test the networks on the sessions' true "
                             "activations: their accuracy without EMG processing error")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="train each network N times with consecutive seeds and report "
                             "the means and the spread (default 1)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    status = rerun_single_threaded(__file__, argv)  # one BLAS thread: numpy's live path
    if status is not None:
        return status
    size = "quick" if args.quick else "full"
    work = None if args.quick else Path(args.work) / size
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    presets = args.preset or (["knee"] if args.quick else ["knee", "wrist"])
    results = [run_preset(name, work, size, log, args.ceiling, args.seeds) for name in presets]
    if args.json:
        print(json.dumps(jsonable({"benchmark": "learning", "size": size,
                                   "results": results}), indent=2))
    else:
        print("\n\n".join(format_report(r) for r in results))
    return 0 if all(math.isfinite(r["rows"][0]["angle_rmse_deg"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
