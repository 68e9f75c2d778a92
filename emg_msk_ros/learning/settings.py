"""Validated training settings, from a YAML mapping (``config/training.yaml``).

Each section is a frozen dataclass; a wrong value raises :class:`ConfigError` naming the option
(e.g. ``training.loss.physics_weight``). The mapping is read with the same strict reader as the
conditioning settings (unknown keys and wrong types are refused).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from emg_msk_ros.signal.config import ConfigError, from_mapping

SCHEMA = "emg_msk_ros/training/1"


def _check(ok: bool, section: str, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{section}.{name} {rule}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """The causal dilated 1-D CNN (see :mod:`emg_msk_ros.learning.model`)."""

    SECTION: ClassVar[str] = "training.model"
    hidden: int = 32  # feature channels per layer
    kernel: int = 5  # taps per convolution
    levels: int = 4  # convolutions, dilations 1, 2, 4, ... 2**(levels - 1)
    horizon: int = 10  # K: steps predicted per window (the newest K), >= 3 for the physics

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(4 <= self.hidden <= 256, s, "hidden", self.hidden, "must be in 4..256")
        _check(2 <= self.kernel <= 15, s, "kernel", self.kernel, "must be in 2..15")
        _check(1 <= self.levels <= 8, s, "levels", self.levels, "must be in 1..8")
        _check(3 <= self.horizon <= 100, s, "horizon", self.horizon, "must be in 3..100")


def receptive_field(kernel: int, levels: int) -> int:
    """Input samples one output step of the CNN depends on: 1 + (kernel - 1)·(2**levels - 1)."""
    return 1 + (kernel - 1) * (2**levels - 1)


def window_length(settings: ModelSettings) -> int:
    """Input window W (steps) for the settings: receptive field - 1 + horizon."""
    return receptive_field(settings.kernel, settings.levels) - 1 + settings.horizon


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Windows and the split of each training session by time."""

    SECTION: ClassVar[str] = "training.data"
    stride: int = 2  # steps between the ends of consecutive training windows
    val_fraction: float = 0.2  # share of each session held out for validation (early stopping)
    val_block_s: float = 5.0  # length (s) of the alternating train/validation blocks
    min_train_s: float = 10.0  # refuse to train on less data than this (s of windows)

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(1 <= self.stride <= 1000, s, "stride", self.stride, "must be in 1..1000")
        _check(0.0 < self.val_fraction <= 0.5, s, "val_fraction", self.val_fraction,
               "must be in (0, 0.5]")
        _check(self.val_block_s > 0, s, "val_block_s", self.val_block_s, "must be > 0 s")
        _check(self.min_train_s >= 0, s, "min_train_s", self.min_train_s, "must be >= 0 s")


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """Weights of the loss terms (each term is normalised; see :mod:`.loss`)."""

    SECTION: ClassVar[str] = "training.loss"
    angle_weight: float = 1.0
    force_weight: float = 1.0  # used when the sessions have force labels
    moment_weight: float = 1.0  # used when the sessions have moment labels
    physics_weight: float = 1.0  # lambda on the equation-of-motion residual
    physics_warmup_epochs: int = 5  # lambda rises linearly from 0 over these epochs
    hill_weight: float = 0.0  # Hill-consistency weight when forces are labelled
    hill_weight_unlabelled: float = 0.1  # Hill-consistency weight when they are not
    state_aided_hill_weight: float = 0.3  # hill_weight of the state-aided model
    state_aided_moment_weight: float = 3.0  # moment_weight of the state-aided model
    learn_parameters: bool = True  # identify strength, l0, l_TS (within bounds) via the Hill term
    strength_min: float = 0.02  # bounds of the learnable strength gain (x F0)
    strength_max: float = 2.5
    length_tolerance: float = 0.2  # l0 and l_TS may move by this fraction

    def __post_init__(self) -> None:
        s = self.SECTION
        for name in ("angle_weight", "force_weight", "moment_weight", "physics_weight",
                     "hill_weight", "hill_weight_unlabelled", "state_aided_hill_weight",
                     "state_aided_moment_weight"):
            _check(getattr(self, name) >= 0, s, name, getattr(self, name), "must be >= 0")
        _check(self.angle_weight > 0, s, "angle_weight", self.angle_weight, "must be > 0")
        _check(self.physics_warmup_epochs >= 0, s, "physics_warmup_epochs",
               self.physics_warmup_epochs, "must be >= 0")
        _check(0 < self.strength_min < 1 < self.strength_max, s, "strength_min/strength_max",
               (self.strength_min, self.strength_max), "must satisfy 0 < min < 1 < max")
        _check(0 <= self.length_tolerance < 1, s, "length_tolerance", self.length_tolerance,
               "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class OptimSettings:
    """Adam, mini-batches, early stopping on the validation loss."""

    SECTION: ClassVar[str] = "training.optim"
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 40
    min_epoch_batches: int = 10  # steps per epoch at least (short sessions redraw windows)
    patience: int = 8  # epochs without a better validation loss before stopping
    max_minutes: float = 30.0  # wall-clock cap; the best epoch so far is kept
    threads: int = 1  # torch CPU threads while training
    state_aided_max_epochs: int = 160  # max_epochs and patience of the state-aided model
    state_aided_patience: int = 40

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(0 < self.learning_rate < 1, s, "learning_rate", self.learning_rate,
               "must be in (0, 1)")
        _check(self.weight_decay >= 0, s, "weight_decay", self.weight_decay, "must be >= 0")
        _check(1 <= self.batch_size <= 65536, s, "batch_size", self.batch_size,
               "must be in 1..65536")
        _check(1 <= self.max_epochs <= 10000, s, "max_epochs", self.max_epochs,
               "must be in 1..10000")
        _check(1 <= self.min_epoch_batches <= 100000, s, "min_epoch_batches",
               self.min_epoch_batches, "must be in 1..100000")
        _check(1 <= self.patience, s, "patience", self.patience, "must be >= 1")
        _check(self.max_minutes > 0, s, "max_minutes", self.max_minutes, "must be > 0")
        _check(1 <= self.threads <= 256, s, "threads", self.threads, "must be in 1..256")
        _check(1 <= self.state_aided_max_epochs <= 10000, s, "state_aided_max_epochs",
               self.state_aided_max_epochs, "must be in 1..10000")
        _check(1 <= self.state_aided_patience, s, "state_aided_patience",
               self.state_aided_patience, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Everything ``emg-msk train`` needs besides the data and the preset."""

    SECTION: ClassVar[str] = "training"
    seed: int = 0
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    loss: LossSettings = dataclasses.field(default_factory=LossSettings)
    optim: OptimSettings = dataclasses.field(default_factory=OptimSettings)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> TrainingSettings:
        """Settings from a mapping shaped like ``config/training.yaml``'s ``training:``."""
        return from_mapping(cls, data, cls.SECTION)

    def to_mapping(self) -> dict[str, Any]:
        """A plain mapping that :meth:`from_mapping` turns back into equal settings."""
        return dataclasses.asdict(self)

    def state_aided(self) -> TrainingSettings:
        """These settings as the state-aided model trains with them: its own epochs, patience
        and Hill and moment weights (``state_aided_*``) in place of the EMG-only model's."""
        return self.replace("optim", max_epochs=self.optim.state_aided_max_epochs,
                            patience=self.optim.state_aided_patience).replace(
            "loss", hill_weight=self.loss.state_aided_hill_weight,
            moment_weight=self.loss.state_aided_moment_weight)

    def replace(self, section: str | None = None, **values: Any) -> TrainingSettings:
        """A copy with options changed: ``replace("loss", physics_weight=0)``,
        ``replace(seed=3)``."""
        if section is None:
            return dataclasses.replace(self, **values)
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **values)})


def load_training_settings(path: str | Path | None = None) -> TrainingSettings:
    """Read ``training:`` from a YAML file (default: the package's ``config/training.yaml``)."""
    from emg_msk_ros.paths import config_path

    path = config_path("training.yaml") if path is None else Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the training settings: {exc}") from exc
    if not isinstance(document, Mapping) or document.get("schema") != SCHEMA:
        raise ConfigError(f"{path}: expected a mapping with schema: {SCHEMA}")
    unknown = sorted(set(document) - {"schema", "training"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    try:
        return TrainingSettings.from_mapping(document.get("training"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
