"""The training loop: Adam on mini-batches of windows, lambda warm-up, early stopping.

Deterministic for a given seed, data and thread count: the seed sets the weight
initialisation and the batch order, and torch runs with deterministic algorithms.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from emg_msk_ros.learning.dataset import DataError, Trial
from emg_msk_ros.learning.loss import PhysicsTerms, PILoss, Scales
from emg_msk_ros.learning.model import PICNN
from emg_msk_ros.learning.settings import TrainingSettings
from emg_msk_ros.learning.state_data import StateWindowSet
from emg_msk_ros.learning.state_loss import StateLoss
from emg_msk_ros.learning.state_model import StateAidedPICNN
from emg_msk_ros.learning.windows import WindowSet
from emg_msk_ros.physics.inverse import derivatives
from emg_msk_ros.physics.preset import Preset

# Force scales never go below this fraction of F0 (a muscle that is never active in the data).
_MIN_FORCE_FRACTION = 0.01
_EVAL_BATCH = 4096


@dataclass
class TrainResult:
    """A trained model, its physics terms and what happened during training."""

    model: PICNN | StateAidedPICNN  # best epoch's weights, eval mode
    terms: PhysicsTerms  # with the learned physiological factors, if any
    scales: Scales
    physics: bool  # trained with the physics terms (False: data-only baseline)
    forces_labelled: bool
    best_epoch: int
    best_val_loss: float
    stop_reason: str
    seconds: float
    history: list[dict] = field(default_factory=list)  # per epoch: losses and terms
    motion_fit: dict[str, float] | None = None  # state-aided: the motion branch's choice


def compute_scales(trials: list[Trial], train_set: WindowSet, preset: Preset) -> Scales:
    """Loss and output scales from the training data.

    Angle: mean and std of the angle. Force: per-muscle std of the labelled forces or, without
    labels, of the Hill forces at the labelled motion, floored at 1 % of F0. Moment: std of the
    labelled net moment, else the torque scale. Torque: std of the inverse-dynamics torque of
    the labelled motion.
    """
    labels = train_set.label_arrays()
    f0 = np.asarray(preset.muscles.max_isometric_force, dtype=np.float64)
    required, hill = [], []
    for trial in trials:
        velocity, acceleration = derivatives(trial.angle, trial.dt)
        required.append(preset.joint.required_muscle_torque(trial.angle, velocity, acceleration))
        hill.append(preset.muscle_forces(trial.activation, trial.angle, velocity))
    torque = float(np.std(np.concatenate(required))) or 1.0
    forces = labels["force"] if "force" in labels else np.concatenate(hill)
    force = np.maximum(np.std(forces, axis=0), _MIN_FORCE_FRACTION * f0)
    moment = float(np.std(labels["moment"])) if "moment" in labels else torque
    angle = float(np.std(labels["angle"])) or 1.0
    return Scales(angle_mean=float(np.mean(labels["angle"])), angle=angle, force=force,
                  moment=moment or torque, torque=torque)


def motion_samples(model: StateAidedPICNN, sets: list[StateWindowSet]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The motion branch's fitting data, one sample per window of ``sets`` at its newest step
    t: (raw states (N, d), targets (N, H + 1) rad: the true angle at t + h less
    constant-velocity extrapolation from the measured state at t, rows (N,): t's step in the
    concatenated sessions; sets over other sessions than the first's continue its count, a
    window and horizon apart)."""
    motion, states, targets, rows, start = model.motion, [], [], [], 0
    for data in sets:
        batch = data.batch(torch.arange(len(data)))
        recent = slice(-motion.reach, None)
        states.append(motion.state(batch.x[:, :, recent], batch.joint[:, :, recent])[:, :, -1])
        newest = batch.joint[:, :, -1:]  # (B, 2, 1)
        targets.append(batch.angle[:, :, -1] - (newest[:, 0] + model.lead[:, 0] * newest[:, 1]))
        shared = len(data.trials) == len(sets[0].trials) and all(
            a is b for a, b in zip(data.trials, sets[0].trials))
        rows.append(data.ends + (0 if shared else start))
        start = max(start, int(rows[-1].max()) + data.window + data.ahead + 1)
    return torch.cat(states), torch.cat(targets), torch.cat(rows)


def fit_motion(model: StateAidedPICNN, sets: list[StateWindowSet]) -> dict[str, float]:
    """Solve the state-aided model's motion branch (:mod:`.kernel_motion`) on every window of
    ``sets`` (the training and validation windows: the branch chooses its settings by its own
    cross-validation, so the validation windows are in-sample for it). Returns its choice and
    cross-validated errors."""
    return model.motion.fit(*motion_samples(model, sets), gap=sets[0].window + sets[0].ahead)


def _model_and_loss(train_set: WindowSet, preset: Preset, settings: TrainingSettings,
                    scales: Scales, terms: PhysicsTerms, physics: bool):
    """The network the windows feed (EMG-only or state-aided) and its loss."""
    forces = torch.as_tensor(scales.force)
    if isinstance(train_set, StateWindowSet):
        velocity, step = train_set.state_scales(terms.dt)
        model = StateAidedPICNN(train_set.n_channels, preset.muscles.count, settings.model,
                                train_set.ahead, terms.dt, angle_mean=scales.angle_mean,
                                angle_scale=scales.angle, velocity_scale=velocity,
                                force_scale=forces)
        return model, StateLoss(terms, scales, step, settings.loss, physics=physics,
                                forces_labelled=train_set.has_force)
    model = PICNN(train_set.n_channels, preset.muscles.count, settings.model,
                  angle_mean=scales.angle_mean, angle_scale=scales.angle, force_scale=forces)
    return model, PILoss(terms, scales, settings.loss, physics=physics,
                         forces_labelled=train_set.has_force)


def _learns(model: torch.nn.Module, loss: torch.nn.Module, data: WindowSet) -> bool:
    """Whether any loss term depends on the network's weights: not so for a state-aided model
    with no physics terms on sessions without force or moment labels (its angle comes from the
    solved motion branch, and nothing supervises its forces)."""
    batch = data.batch(torch.arange(min(len(data), 8)))
    value, _ = loss(model(*batch.inputs), batch)
    return value.requires_grad


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads and deterministic algorithms."""
    before_threads = torch.get_num_threads()
    before_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det)


def _evaluate(loss: PILoss, model: PICNN, data: WindowSet) -> tuple[float, dict[str, float]]:
    """Mean loss (full lambda) and terms over a window set."""
    total, terms, count = 0.0, {}, 0
    with torch.no_grad():
        for start in range(0, len(data), _EVAL_BATCH):
            positions = torch.arange(start, min(len(data), start + _EVAL_BATCH))
            batch = data.batch(positions)
            value, parts = loss(model(*batch.inputs), batch)
            n = len(positions)
            total += float(value) * n
            for name, part in parts.items():
                terms[name] = terms.get(name, 0.0) + part * n
            count += n
    return total / count, {name: value / count for name, value in terms.items()}


def train_model(trials: list[Trial], train_set: WindowSet, val_set: WindowSet, preset: Preset,
                settings: TrainingSettings, *, physics: bool = True,
                progress: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train the PI-CNN (``physics=True``) or the data-only CNN on ``train_set``.

    ``trials`` are the training sessions (for the loss scales). Early stopping watches the
    validation loss at the full lambda; the best epoch's weights are returned. ``progress`` is
    called after every epoch with (epoch, record).
    """
    covered = len(train_set) * settings.data.stride * trials[0].dt  # s of window ends
    if covered < settings.data.min_train_s:
        raise DataError(
            f"too little training data: {len(train_set)} windows ({covered:.1f} s), at least "
            f"{settings.data.min_train_s} s needed (training.data.min_train_s)")
    if len(val_set) == 0:
        raise DataError("no validation windows: the sessions are too short for the window of "
                        f"{train_set.window} steps; record longer sessions")
    forces_labelled = train_set.has_force
    scales = compute_scales(trials, train_set, preset)
    optim = settings.optim
    with torch_threads(optim.threads):
        torch.manual_seed(settings.seed)
        learnable = physics and settings.loss.learn_parameters
        terms = PhysicsTerms(preset, trials[0].dt, settings.loss, learnable=learnable)
        model, loss = _model_and_loss(train_set, preset, settings, scales, terms, physics)
        started = time.perf_counter()  # the motion branch's fit counts as training time
        motion_fit = (fit_motion(model, [train_set, val_set])
                      if isinstance(model, StateAidedPICNN) else None)
        learns = _learns(model, loss, train_set)
        parameters = list(model.parameters()) + list(terms.parameters())
        optimiser = torch.optim.Adam(parameters, lr=optim.learning_rate,
                                     weight_decay=optim.weight_decay)
        generator = torch.Generator().manual_seed(settings.seed)
        warmup = settings.loss.physics_warmup_epochs
        best = (math.inf, -1, None)
        history: list[dict] = []
        stop_reason = f"max_epochs ({optim.max_epochs}) reached"
        # An epoch is one pass over the windows or optim.min_epoch_batches steps, whichever is
        # more: short sessions draw their windows again (fresh orders), so that warm-up, patience
        # and max_epochs mean as much training as on long sessions.
        epoch_windows = max(len(train_set), optim.min_epoch_batches * optim.batch_size)
        passes = -(-epoch_windows // len(train_set))
        for epoch in range(optim.max_epochs if learns else 1):
            ramp = min(1.0, (epoch + 1) / warmup) if warmup else 1.0
            lam = settings.loss.physics_weight * ramp
            model.train()
            order = torch.cat([torch.randperm(len(train_set), generator=generator)
                               for _ in range(passes)])[:epoch_windows]
            running, batches = 0.0, 0
            for start in range(0, len(order), optim.batch_size):
                batch = train_set.batch(order[start:start + optim.batch_size])
                value, _ = loss(model(*batch.inputs), batch, physics_weight=lam)
                if learns:
                    optimiser.zero_grad(set_to_none=True)
                    value.backward()
                    optimiser.step()
                running += float(value.detach())
                batches += 1
            model.eval()
            val_loss, val_terms = _evaluate(loss, model, val_set)
            record = {"epoch": epoch, "steps": batches, "lambda": lam,
                      "train_loss": running / batches,
                      "val_loss": val_loss, "val_terms": val_terms}
            history.append(record)
            if progress is not None:
                progress(epoch, record)
            if not math.isfinite(val_loss):
                stop_reason = f"validation loss became {val_loss} at epoch {epoch}"
                break
            if val_loss < best[0]:
                best = (val_loss, epoch, (copy.deepcopy(model.state_dict()),
                                          copy.deepcopy(terms.state_dict())))
            elif epoch >= warmup and epoch - max(best[1], warmup - 1) >= optim.patience:
                stop_reason = f"early stop: no better validation loss for {optim.patience} epochs"
                break
            if time.perf_counter() - started > optim.max_minutes * 60.0:
                stop_reason = f"time limit ({optim.max_minutes} min) reached"
                break
        if not learns:
            stop_reason = "nothing to train: no loss term depends on the network's weights"
        if best[2] is None:
            raise RuntimeError(f"training diverged: {stop_reason}")
        model.load_state_dict(best[2][0])
        terms.load_state_dict(best[2][1])
        model.eval()
    return TrainResult(model=model, terms=terms, scales=scales, physics=physics,
                       forces_labelled=forces_labelled, best_epoch=best[1],
                       best_val_loss=best[0], stop_reason=stop_reason,
                       seconds=time.perf_counter() - started, history=history,
                       motion_fit=motion_fit)
