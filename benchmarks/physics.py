"""Physics speed: simulating sessions, the EMG-driven baseline, static optimisation.

``emg-msk bench physics [--json] [--quick] [--duration 60] [--presets knee,wrist]``. Measured in one
process pinned to one core; CPU time counts (wall time printed beside it), since the machine
may be shared. For each preset:

- ``simulate``: ``simulate_session`` of ``--duration`` s (random reference tracked by the
  muscles at 1 kHz, plus 2 kHz EMG synthesis), and its real-time factor;
- ``forward``: open-loop forward simulation of the same excitations, one muscle at a time in
  floats (the default for one trial), against the numpy-vectorised path on the same trial
  (the baseline it replaced): per step;
- ``baseline step``: one sample of the EMG-driven model (``EmgDrivenModel.step``), median and
  p99, and per estimate of a 10 ms window (10 samples at 1 kHz);
- ``static optimisation``: every frame of the session at once, against scipy's SLSQP on a
  sample of frames (per frame);
- ``inverse dynamics`` of the session, and ``calibrate`` on its first 20 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from scipy import optimize

from emg_msk_ros.benchmarking import add_quick, parse_with_quick, pin_one_core
from emg_msk_ros.physics.baseline import EmgDrivenModel, calibrate
from emg_msk_ros.physics.forward import simulate_forward
from emg_msk_ros.physics.inverse import inverse_dynamics
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.simulate import simulate_session
from emg_msk_ros.physics.static_opt import static_optimization, torque_coefficients

WINDOW = 10  # samples per estimate of the baseline (10 ms at 1 kHz)


def _timed(function):
    """(result, CPU s, wall s) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - c0, time.perf_counter() - w0


def _slsqp(k: np.ndarray, target: np.ndarray) -> None:
    for row, goal in zip(k, target):
        optimize.minimize(lambda a: a @ a, np.full(len(row), 0.1), jac=lambda a: 2 * a,
                          method="SLSQP", bounds=[(0, 1)] * len(row),
                          constraints=[{"type": "eq", "fun": lambda a, r=row, g=goal: r @ a - g}])


def measure_preset(name: str, duration: float, baseline_steps: int, slsqp_frames: int) -> dict:
    """All numbers for one preset (times in s unless the key says us)."""
    preset = load_preset(name)
    dt = 1e-3
    rec, cpu, wall = _timed(lambda: simulate_session(preset, duration, seed=0))
    out = {"preset": name, "duration_s": duration, "simulate_cpu_s": cpu, "simulate_wall_s": wall,
           "simulate_realtime_factor": duration / cpu}
    n = len(rec.kin_time)
    _, cpu, _ = _timed(lambda: simulate_forward(preset, rec.excitation, dt, rec.angle[0]))
    out["forward_scalar_us_per_step"] = cpu / n * 1e6
    short = min(n, 10000)
    _, cpu, _ = _timed(lambda: simulate_forward(preset, rec.excitation[:short, None], dt,
                                                rec.angle[:1]))
    out["forward_numpy_us_per_step"] = cpu / short * 1e6

    model = EmgDrivenModel(preset, dt, rec.angle[0], 0.0, rec.excitation[0])
    steps = np.empty(baseline_steps)
    clock = time.perf_counter
    for i in range(baseline_steps):
        t0 = clock()
        model.step(rec.excitation[i % n])
        steps[i] = clock() - t0
    out["baseline_step_median_us"] = float(np.median(steps) * 1e6)
    out["baseline_step_p99_us"] = float(np.percentile(steps, 99) * 1e6)
    windows = steps[: baseline_steps // WINDOW * WINDOW].reshape(-1, WINDOW).sum(1)
    out["baseline_estimate_10ms_median_us"] = float(np.median(windows) * 1e6)
    out["baseline_estimate_10ms_p99_us"] = float(np.percentile(windows, 99) * 1e6)

    torque, cpu, _ = _timed(lambda: inverse_dynamics(preset, rec.angle, dt))
    out["inverse_dynamics_s"] = cpu
    _, cpu, _ = _timed(lambda: static_optimization(preset, rec.angle, rec.velocity, torque))
    out["static_opt_us_per_frame"] = cpu / n * 1e6
    pick = np.linspace(0, n - 1, slsqp_frames).astype(int)
    k, passive = torque_coefficients(preset, rec.angle[pick], rec.velocity[pick])
    _, cpu, _ = _timed(lambda: _slsqp(k, torque[pick] - passive))
    out["slsqp_us_per_frame"] = cpu / slsqp_frames * 1e6
    out["static_opt_speedup"] = out["slsqp_us_per_frame"] / out["static_opt_us_per_frame"]

    train = min(n, 20000)
    _, cpu, _ = _timed(lambda: calibrate(preset, rec.excitation[:train], rec.angle[:train], dt))
    out["calibrate_20s_s"] = cpu
    return out


def _table(rows: list[dict]) -> str:
    lines = [
        "| preset | session | simulate (CPU / wall) | real time x | forward step: floats / numpy "
        "| baseline step p50 / p99 | baseline per 10 ms estimate p50 / p99 "
        "| static opt per frame (vs SLSQP) | inverse dyn. | calibrate 20 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['duration_s']:g} s "
            f"| {r['simulate_cpu_s']:.2f} s / {r['simulate_wall_s']:.2f} s "
            f"| {r['simulate_realtime_factor']:.1f} "
            f"| {r['forward_scalar_us_per_step']:.0f} us / {r['forward_numpy_us_per_step']:.0f} us "
            f"| {r['baseline_step_median_us']:.0f} us / {r['baseline_step_p99_us']:.0f} us "
            f"| {r['baseline_estimate_10ms_median_us'] / 1e3:.2f} ms / "
            f"{r['baseline_estimate_10ms_p99_us'] / 1e3:.2f} ms "
            f"| {r['static_opt_us_per_frame']:.2f} us ({r['static_opt_speedup']:.0f}x faster) "
            f"| {r['inverse_dynamics_s'] * 1e3:.1f} ms | {r['calibrate_20s_s']:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``emg-msk bench physics``."""
    parser = argparse.ArgumentParser(prog="emg-msk bench physics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--duration", type=float, default=60.0, help="session length, s")
    parser.add_argument("--presets", default="knee,wrist", help="comma separated")
    parser.add_argument("--baseline-steps", type=int, default=5000)
    parser.add_argument("--slsqp-frames", type=int, default=200)
    add_quick(parser, "2 s sessions, 200 baseline steps, 5 SLSQP frames")
    args = parse_with_quick(parser, argv, duration=2.0, baseline_steps=200, slsqp_frames=5)
    pinned = pin_one_core()
    rows = [measure_preset(name.strip(), args.duration, args.baseline_steps, args.slsqp_frames)
            for name in args.presets.split(",") if name.strip()]
    if args.json:
        print(json.dumps({"machine": platform.processor() or platform.machine(),
                          "cpu": pinned, "results": rows}, indent=2))
    else:
        print(f"physics benchmark ({pinned}; CPU time, wall time beside it)")
        print(_table(rows))
    return 0
