"""``emg-msk simulate``: a synthetic session with ground truth, as a Recording or a bag.

The motion comes from forward-simulating the preset's muscles tracking a random reference
(:mod:`emg_msk_ros.physics.motions`), so angle, velocity, activations, forces and moments obey
the same equations the models learn; raw EMG is synthesised from the excitations
(:mod:`emg_msk_ros.physics.synth_emg`). The exoskeleton's joint sensor reads the true motion
as an encoder would (:mod:`emg_msk_ros.physics.encoder`: its rate, quantisation and noise, from
a random stream of its own, so the EMG of a seed does not depend on it); the session keeps both
the readings and the truth. The same seed gives the same session, bit for bit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emg_msk_ros import __version__
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.physics.encoder import EncoderSettings, measure_trajectory
from emg_msk_ros.physics.inverse import derivatives
from emg_msk_ros.physics.motions import REGIMES, MotionSettings, simulate_motion
from emg_msk_ros.physics.preset import Preset, PresetError, load_preset
from emg_msk_ros.physics.synth_emg import EmgSynthSettings, synthesize_emg

GENERATOR = "emg_msk_ros.physics.simulate"
ENCODER_STREAM = 1  # the encoder's random stream: default_rng([seed, ENCODER_STREAM])


def simulate_session(preset: Preset | str, duration: float, seed: int, *,
                     kin_rate: float = 1000.0, motion: MotionSettings | None = None,
                     emg: EmgSynthSettings | None = None,
                     encoder: EncoderSettings | None = None) -> Recording:
    """A synthetic session of ``duration`` s: raw EMG (V) plus true kinematics and muscle
    states on ``kin_time`` (the integration rate ``kin_rate``, Hz), and the encoder's readings
    of the joint (``measured_*``, at ``encoder.rate``)."""
    preset = load_preset(preset) if isinstance(preset, (str, Path)) else preset
    if not duration > 0:
        raise ValueError(f"duration must be > 0 s, got {duration}")
    if not kin_rate > 0:
        raise ValueError(f"kin_rate must be > 0 Hz, got {kin_rate}")
    motion = motion or MotionSettings()
    emg = emg or EmgSynthSettings()
    encoder = encoder or EncoderSettings()
    rng = np.random.default_rng(seed)
    dt = 1.0 / kin_rate
    trial, _ = simulate_motion(preset, duration, dt, rng, motion)
    _, acceleration = derivatives(trial.angle, dt)
    raw, gains = synthesize_emg(rng, trial.time, trial.excitation, acceleration, emg)
    readings = measure_trajectory(trial.time, trial.angle, encoder,
                                  np.random.default_rng([seed, ENCODER_STREAM]))
    metadata = {
        "generator": GENERATOR,
        "version": __version__,
        "preset": preset.name,
        "preset_sha256": preset.sha256,
        "seed": int(seed),
        "duration": float(duration),
        "kin_rate": float(kin_rate),
        "motion": {k: getattr(motion, k) for k in ("regime", "max_speed", "margin",
                                                     "cocontraction", "tone",
                                                     "excitation_noise")},
        "emg": emg.as_dict(),
        "encoder": encoder.as_dict(),
        "emg_gain": [float(g) for g in gains],
        "channel_muscles": dict(zip(preset.channel_names, preset.muscle_names)),
    }
    return Recording(
        emg=raw, sample_rate=emg.sample_rate, channel_names=list(preset.channel_names),
        joint_name=preset.joint.name, kin_time=trial.time, angle=trial.angle,
        velocity=trial.velocity, muscle_names=list(preset.muscle_names),
        excitation=trial.excitation, activation=trial.activation, force=trial.force,
        moment=trial.moment, metadata=metadata, measured_time=readings[0],
        measured_angle=readings[1], measured_velocity=readings[2])


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``emg-msk simulate``."""
    parser.add_argument("--preset", default="knee", help="preset name (knee, wrist) or YAML path")
    parser.add_argument("--duration", type=float, default=60.0, help="session length, s")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bag)")
    parser.add_argument("--out", required=True, help="output bag folder (must not exist)")
    parser.add_argument("--emg-rate", type=float, default=2000.0, help="EMG sample rate, Hz")
    parser.add_argument("--kin-rate", type=float, default=1000.0,
                        help="integration and ground-truth rate, Hz")
    parser.add_argument("--motion", choices=sorted(REGIMES), default="mixed",
                        help="speed regime of the movements")
    parser.add_argument("--max-speed", type=float,
                        help="cap on the movements' peak speed, rad/s")
    parser.add_argument("--cocontraction", type=float, default=0.3,
                        help="largest co-contraction activation in holds (0..1)")
    parser.add_argument("--sensor-noise", type=float, default=5e-6, help="V RMS")
    parser.add_argument("--powerline", type=float, default=1e-5, help="V amplitude")
    parser.add_argument("--powerline-frequency", type=float, default=50.0, help="Hz")
    parser.add_argument("--drift", type=float, default=2e-5, help="baseline drift, V RMS")
    parser.add_argument("--crosstalk", type=float, default=0.1,
                        help="largest fraction of another channel picked up")
    parser.add_argument("--motion-artifact", type=float, default=5e-5, help="V RMS at peak")


def run(args: argparse.Namespace) -> int:
    """Simulate and write the session bag; returns the exit code."""
    from emg_msk_ros.io.session_bag import write_recording

    try:
        motion = MotionSettings(regime=args.motion, max_speed=args.max_speed,
                                cocontraction=args.cocontraction)
        emg = EmgSynthSettings(sample_rate=args.emg_rate, sensor_noise=args.sensor_noise,
                               powerline=args.powerline,
                               powerline_frequency=args.powerline_frequency, drift=args.drift,
                               crosstalk=args.crosstalk, motion_artifact=args.motion_artifact)
        recording = simulate_session(args.preset, args.duration, args.seed,
                                     kin_rate=args.kin_rate, motion=motion, emg=emg)
        path = write_recording(args.out, recording)
    except (PresetError, ValueError, FileExistsError) as exc:
        print(f"emg-msk simulate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}: {recording.duration:.1f} s, {len(recording.channel_names)} channels "
          f"at {recording.sample_rate:g} Hz, preset {recording.metadata['preset']}, "
          f"seed {args.seed}")
    return 0
