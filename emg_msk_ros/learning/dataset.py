"""Training data from sessions: causal features, labels on the model's time base, windows, splits.

A :class:`Trial` is one session conditioned by the streaming conditioner's causal path
(:func:`emg_msk_ros.signal.conditioner.condition_recording`): excitation at the model rate
(columns in the preset's muscle order), and the labels interpolated at each excitation sample's
time: angle (rad), and when the session has them, muscle forces (N) and the net muscle moment
(N·m).

The network's input is the excitation minus the session's baseline
(:func:`.inference.model_input`), its resting level. The rest level of an MVC-normalised
envelope depends on the electrode (noise floor / gain); at the small excitations that hold a
limb against gravity an uncorrected offset of 0.01 shifts the estimate by many degrees, so each
session's baseline is removed, as with its MVC reference. It comes from the calibration's rest
trial when there is one (simulated sessions have a simulated one), else it is the 2nd percentile
of each channel over the session. The percentile depends on what the session's muscles did, not
only on the electrode: fed the simulator's true activations less their percentile, a data-only
network missed the knee angle by 10.6 deg, against 3.8 deg with nothing removed (development
sessions). The trial also carries the activation the preset's activation dynamics give for that
input (input of the Hill-consistency term).

A window ending at step t holds excitation[t - W + 1 .. t] and the labels of its last K steps.
Training sessions are split by time into alternating blocks (:func:`split_by_time`); windows
are cut inside one segment only, so no window of one part overlaps a window of the other.
Splitting by trial means passing other sessions for validation or evaluation. The windows as
torch batches are :mod:`.windows`; this module needs no torch (``emg-msk evaluate`` serves with
ONNX Runtime).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.learning.inference import model_input
from emg_msk_ros.learning.joint_input import JointStateError, hold_at, measured_state
from emg_msk_ros.physics.preset import Preset
from emg_msk_ros.signal.calibration import Calibration, compute_calibration, rest_levels
from emg_msk_ros.signal.conditioner import condition_recording
from emg_msk_ros.signal.config import ConditioningSettings


class DataError(ValueError):
    """A session that cannot be used for training or evaluation; the message says why."""


@dataclass
class Trial:
    """One session on the model's time base (n samples every ``dt`` s)."""

    name: str
    dt: float  # s
    time: np.ndarray  # (n,) s
    excitation: np.ndarray  # (n, M) 0..1 conditioner output, columns in the preset's muscle order
    baseline: np.ndarray  # (M,) the session's resting excitation (see module docstring)
    activation: np.ndarray  # (n, M) the preset's activation dynamics driven by the model input
    angle: np.ndarray | None  # (n,) rad
    force: np.ndarray | None  # (n, M) N
    moment: np.ndarray | None  # (n,) N·m, net muscle moment
    # (n, 2) the joint sensor's angle (rad) and velocity (rad/s) held at each step
    # (:func:`.joint_input.hold_at`); only for the state-aided model
    joint_state: np.ndarray | None = None

    def __len__(self) -> int:
        return self.time.shape[0]

    @property
    def duration(self) -> float:
        """Length in s."""
        return len(self) * self.dt

    @property
    def inputs(self) -> np.ndarray:
        """The network's input (n, M): :func:`model_input` of the excitation."""
        return model_input(self.excitation, self.baseline)


BASELINE_PERCENTILE = 2.0


def session_baseline(excitation: np.ndarray) -> np.ndarray:
    """Resting level of each channel (C,): the 2nd percentile of a session's excitation (n, C)."""
    return np.percentile(excitation, BASELINE_PERCENTILE, axis=0)


def channel_columns(recording: Recording, channel_names: Sequence[str], where: str) -> list[int]:
    """Column of each expected channel in the recording; DataError listing what is missing."""
    missing = [name for name in channel_names if name not in recording.channel_names]
    if missing:
        raise DataError(
            f"{where}: missing EMG channel(s) {', '.join(missing)}; expected "
            f"{', '.join(channel_names)}, got {', '.join(recording.channel_names)}")
    return [recording.channel_names.index(name) for name in channel_names]


def _muscle_columns(recording: Recording, preset: Preset, where: str) -> list[int] | None:
    """Columns of the preset's muscles in the recording's muscle arrays (None: no force labels)."""
    if recording.force is None:
        return None
    missing = [name for name in preset.muscle_names if name not in recording.muscle_names]
    if missing:
        raise DataError(
            f"{where}: force labels lack muscle(s) {', '.join(missing)} of preset "
            f"{preset.name!r} (the session has {', '.join(recording.muscle_names)})")
    return [recording.muscle_names.index(name) for name in preset.muscle_names]


def select_channels(recording: Recording, preset: Preset, where: str) -> Recording:
    """The recording reduced to the preset's channels, in the preset's muscle order."""
    columns = channel_columns(recording, preset.channel_names, where)
    if columns == list(range(recording.emg.shape[1])):
        return recording
    return Recording(emg=recording.emg[:, columns], sample_rate=recording.sample_rate,
                     channel_names=list(preset.channel_names),
                     start_time=recording.start_time)


# Length (s) and EMG RMS (V) of the simulated MVC contraction used to calibrate simulated
# sessions (a realistic level: the conditioner treats |x| > 1 V as an amplifier fault).
_MVC_SECONDS = 5.0
_MVC_RMS = 1e-3
_REST_SECONDS = 10.0


def simulated_mvc_calibration(recording: Recording, preset: Preset,
                              settings: ConditioningSettings, name: str) -> Calibration:
    """The calibration an MVC trial and a rest trial would give in a simulated session.

    The simulator records each channel's electrode gain (``metadata["emg_gain"]``: EMG RMS in V
    at full excitation). A full contraction of unit gain is synthesised with the simulator's own
    EMG model (band-limited noise in the session's band, no artefacts; 1 mV RMS, scaled to a
    unit gain) and calibrated like a recorded MVC trial; each channel's reference is that value
    times its gain. The rest trial is each electrode at its gain with the muscle at the
    simulator's resting tone and the session's sensor noise, power line and drift; its median
    envelope is the channel's rest level.
    """
    from emg_msk_ros.physics.motions import MotionSettings
    from emg_msk_ros.physics.synth_emg import EmgSynthSettings, synthesize_emg

    channel_columns(recording, preset.channel_names, name)  # DataError naming what is missing
    gains = np.asarray(recording.metadata["emg_gain"], dtype=np.float64)
    if gains.shape != (len(recording.channel_names),) or not np.all(gains > 0):
        raise DataError(f"{name}: metadata emg_gain must give one positive gain per channel, "
                        f"got {recording.metadata['emg_gain']!r}")
    emg = recording.metadata.get("emg", {})
    band = tuple(emg.get("band", EmgSynthSettings.band))
    quiet = {"crosstalk": 0.0, "motion_artifact": 0.0}
    mvc = EmgSynthSettings(sample_rate=recording.sample_rate, band=band,
                           gain_range=(_MVC_RMS, _MVC_RMS), sensor_noise=0.0, powerline=0.0,
                           drift=0.0, **quiet)
    kin_time = np.arange(int(_MVC_SECONDS * 100)) / 100.0
    unit, _ = synthesize_emg(np.random.default_rng(0), kin_time, np.ones((len(kin_time), 1)),
                             None, mvc)
    reference = compute_calibration(unit, recording.sample_rate, ["unit"], settings)
    per_volt = reference.references["unit"] / _MVC_RMS
    by_channel = dict(zip(recording.channel_names, gains * per_volt))

    noise = {key: float(emg[key]) for key in ("sensor_noise", "powerline", "powerline_frequency",
                                              "drift") if key in emg}
    tone = float(recording.metadata.get("motion", {}).get("tone", MotionSettings.tone))
    kin_time = np.arange(int(_REST_SECONDS * 100)) / 100.0
    rest = {}
    for channel, gain in zip(recording.channel_names, gains):
        synth = EmgSynthSettings(sample_rate=recording.sample_rate, band=band,
                                 gain_range=(gain, gain), **noise, **quiet)
        trial, _ = synthesize_emg(np.random.default_rng(0), kin_time,
                                  np.full((len(kin_time), 1), tone), None, synth)
        rest.update(rest_levels(trial, recording.sample_rate, [channel], settings))
    return Calibration(references={ch: float(by_channel[ch]) for ch in preset.channel_names},
                       conditioning=settings.envelope_signature(),
                       percentile=settings.normalisation.percentile,
                       source=f"{name} (simulated MVC and rest trials at the session's "
                              "electrode gains)",
                       rest={ch: rest[ch] for ch in preset.channel_names})


def session_calibration(recording: Recording, preset: Preset, settings: ConditioningSettings,
                        name: str) -> Calibration:
    """Reference envelopes of one session when no MVC calibration file is given.

    Simulated sessions (with ``metadata["emg_gain"]``): :func:`simulated_mvc_calibration`.
    Others: each channel's robust percentile (``settings.normalisation.percentile``) of its own
    envelope over the session, which assumes the session reaches similar effort levels as the
    training sessions did. Electrode gains differ between sessions, so each session needs its
    own references.
    """
    if "emg_gain" in recording.metadata:
        return simulated_mvc_calibration(recording, preset, settings, name)
    return compute_calibration(select_channels(recording, preset, name).emg,
                               recording.sample_rate, list(preset.channel_names), settings,
                               source=f"{name} (self-calibrated)")


def _refuse_non_finite(values: np.ndarray, times: np.ndarray, what: str, name: str) -> None:
    """DataError naming the first stretch of NaN/Inf rows of ``values`` (n, ...) at ``times``
    (n,) s; ``what`` says whose values they are."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64).reshape(len(values), -1)).all(axis=1)
    if not bad.any():
        return
    first = int(np.argmax(bad))
    end = len(bad) if bad[first:].all() else first + int(np.argmax(~bad[first:]))
    raise DataError(f"{name}: {what} NaN/Inf in {int(bad.sum())} of {len(bad)} samples, first "
                    f"from t = {times[first]:.3f} s to {times[end - 1]:.3f} s; cut the session "
                    "around such stretches (training and evaluation need finite data)")


def _check_finite(emg: Recording, labels: Recording, name: str) -> None:
    """DataError for NaN/Inf in the EMG (the recording reduced to the channels used) or in the
    labels: the live conditioner bridges short bursts, but training and scoring on bridged
    samples would hide them."""
    bad = ~np.isfinite(emg.emg).all(axis=0)
    if bad.any():
        names = ", ".join(n for n, b in zip(emg.channel_names, bad) if b)
        times = emg.start_time + np.arange(len(emg.emg)) / emg.sample_rate
        _refuse_non_finite(emg.emg[:, bad], times, f"EMG channel(s) {names} are", name)
    for label in ("angle", "force", "moment"):
        values = getattr(labels, label)
        if values is not None:
            _refuse_non_finite(values, labels.kin_time, f"the {label} labels are", name)


def make_trial(recording: Recording, preset: Preset, settings: ConditioningSettings,
               calibration: Calibration, name: str, require_angle: bool = True,
               baseline: np.ndarray | None = None, joint_state: bool = False) -> Trial:
    """Condition a session and put its labels on the excitation's time base.

    Excitation samples outside the span of the session's kinematics are dropped. ``baseline``
    (C,) defaults to the calibration's rest levels, else the session's own
    (:func:`session_baseline`). ``joint_state``: also hold the joint sensor's newest reading at
    each step (:mod:`.joint_input`), dropping the steps before its first reading.
    """
    if recording.joint_name not in (None, preset.joint.name):
        raise DataError(f"{name}: joint {recording.joint_name!r} differs from preset "
                        f"{preset.name!r}'s joint {preset.joint.name!r}")
    force_columns = _muscle_columns(recording, preset, name)
    selected = select_channels(recording, preset, name)
    _check_finite(selected, recording, name)
    excitation, time = condition_recording(selected, settings, calibration)
    dt = 1.0 / settings.output_rate_hz
    angle = force = moment = None
    if recording.angle is None:
        if require_angle:
            raise DataError(f"{name}: the session has no joint angle (topic joint_states); "
                            "training and evaluation need it")
    else:
        kin_time = recording.kin_time
        keep = (time >= kin_time[0] - 1e-9) & (time <= kin_time[-1] + 1e-9)
        excitation, time = excitation[keep], time[keep]
        angle = np.interp(time, kin_time, recording.angle)
        if force_columns is not None:
            force = np.stack([np.interp(time, kin_time, recording.force[:, i])
                              for i in force_columns], axis=1)
        if recording.moment is not None:
            moment = np.interp(time, kin_time, recording.moment.sum(axis=1))
    state = None
    if joint_state:
        try:
            stamps, measured, speed = measured_state(recording)
        except JointStateError as exc:
            raise DataError(f"{name}: {exc}") from exc
        _refuse_non_finite(np.stack([measured, speed], axis=1), stamps,
                           "the measured joint states are", name)
        state, _ = hold_at(stamps, np.stack([measured, speed], axis=1), time)
        keep = np.isfinite(state[:, 0])
        excitation, time, state = excitation[keep], time[keep], state[keep]
        angle, force, moment = (None if v is None else v[keep] for v in (angle, force, moment))
    if len(time) == 0:
        raise DataError(f"{name}: no EMG overlaps the session's kinematics")
    if baseline is None:
        baseline = calibration.rest_excitation_for(preset.channel_names)
    if baseline is None:
        baseline = session_baseline(excitation)
    activation = preset.activate(model_input(excitation, baseline), dt)
    return Trial(name=name, dt=dt, time=time, excitation=excitation,
                 baseline=np.asarray(baseline, dtype=np.float64), activation=activation,
                 angle=angle, force=force, moment=moment, joint_state=state)


def true_activation_trial(trial: Trial, recording: Recording, preset: Preset) -> Trial:
    """``trial`` with the session's true muscle activations in place of its conditioned EMG.

    A diagnostic for simulated sessions: a network trained and scored on these inputs shows
    what it could do with perfect EMG processing. They have no noise floor, so no baseline is
    removed. Such a network cannot run on EMG.
    """
    if recording.activation is None or recording.muscle_names is None:
        raise DataError(f"{trial.name}: the session has no true activations (only simulated "
                        "sessions do)")
    missing = [name for name in preset.muscle_names if name not in recording.muscle_names]
    if missing:
        raise DataError(f"{trial.name}: activations lack muscle(s) {', '.join(missing)}")
    columns = [recording.muscle_names.index(name) for name in preset.muscle_names]
    activation = np.stack([np.interp(trial.time, recording.kin_time, recording.activation[:, i])
                           for i in columns], axis=1)
    baseline = np.zeros(activation.shape[1])  # no noise floor to remove
    return dataclasses.replace(trial, excitation=activation, baseline=baseline,
                               activation=preset.activate(activation, trial.dt))


def recordings_hash(recordings: Sequence[Recording]) -> str:
    """sha256 over the sessions' EMG, rates, channel names and labels, in order."""
    digest = hashlib.sha256()
    for rec in recordings:
        digest.update(repr((rec.sample_rate, list(rec.channel_names), rec.emg.shape)).encode())
        digest.update(np.ascontiguousarray(rec.emg, dtype=np.float64).tobytes())
        for array in (rec.kin_time, rec.angle, rec.force, rec.moment):
            if array is not None:
                digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


Segment = tuple[int, int]  # [start, stop) sample indices of one trial


def split_by_time(n: int, dt: float, val_fraction: float, block_s: float
                  ) -> tuple[list[Segment], list[Segment]]:
    """Alternating blocks: every round(1/val_fraction)-th block of ``block_s`` s is validation.

    Returns (train segments, validation segments), merged where adjacent. A remainder shorter
    than half a block joins the last whole block, so that no block is shorter than half a
    block (a final sliver of a validation block would hold no window). A session of fewer
    blocks than one period is cut once, its last ``val_fraction`` going to validation.
    """
    block = max(1, round(block_s / dt))
    period = max(2, round(1.0 / val_fraction))
    n_blocks = max(1, (2 * n + block) // (2 * block))  # round half up
    if n_blocks < period:
        cut = n - max(1, round(n * val_fraction))
        return [(0, cut)], [(cut, n)]
    train: list[Segment] = []
    val: list[Segment] = []
    for b in range(n_blocks):
        start, stop = b * block, n if b == n_blocks - 1 else (b + 1) * block
        target = val if b % period == period - 1 else train
        if target and target[-1][1] == start:
            target[-1] = (target[-1][0], stop)
        else:
            target.append((start, stop))
    return train, val


def window_ends(segments: Sequence[Segment], window: int, stride: int) -> np.ndarray:
    """Last sample index of every window of ``window`` steps lying inside one segment."""
    ends = [np.arange(start + window - 1, stop, stride) for start, stop in segments]
    return np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
