"""Safety limits of the assist controller: ranges, validation, and which changes loosen them.

Every limit is described by a :class:`ParamSpec` (name, unit, allowed range, default). The same
specs give the node its parameter descriptors, so the range a user sees in ``ros2 param describe``
is the range :meth:`SafetyLimits.from_values` enforces.

Torques are N·m, positive toward a positive joint angle (flexion); angles rad; times s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


class LimitError(ValueError):
    """A limit (or set of limits) that is out of range or inconsistent; the message says why."""


@dataclass(frozen=True)
class ParamSpec:
    """One range-checked numeric setting.

    ``per_joint`` settings take one value per joint (a single value applies to every joint).
    ``looser`` tells which direction relaxes safety: +1 when a larger value is less safe (a torque
    limit), -1 when a smaller value is (a lower position limit), 0 when it is not a safety limit.
    """

    name: str
    default: float
    low: float
    high: float
    unit: str
    description: str
    per_joint: bool = False
    looser: int = 0

    def check(self, values: np.ndarray) -> None:
        """Raise :class:`LimitError` naming this setting if any value is non-finite or outside
        [low, high]."""
        for index, value in enumerate(np.atleast_1d(values)):
            where = f"{self.name}[{index}]" if self.per_joint else self.name
            if not math.isfinite(value):
                raise LimitError(f"{where} = {value} is not a finite number")
            if not self.low <= value <= self.high:
                raise LimitError(
                    f"{where} = {value:g} {self.unit} is outside the allowed range "
                    f"[{self.low:g}, {self.high:g}] {self.unit}"
                )


LIMIT_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("max_torque", 10.0, 0.0, 200.0, "N·m",
              "largest |command| per joint", per_joint=True, looser=+1),
    ParamSpec("max_torque_rate", 100.0, 0.1, 2000.0, "N·m/s",
              "slew-rate limit on the command per joint", per_joint=True, looser=+1),
    ParamSpec("position_min", -0.05, -2 * math.pi, 2 * math.pi, "rad",
              "lower end of the allowed joint range", per_joint=True, looser=-1),
    ParamSpec("position_max", 1.9, -2 * math.pi, 2 * math.pi, "rad",
              "upper end of the allowed joint range", per_joint=True, looser=+1),
    ParamSpec("range_margin", 0.1, 0.0, 0.5, "rad",
              "within this distance of a range end only torque away from it is allowed",
              per_joint=True, looser=-1),
    ParamSpec("max_velocity", 3.0, 0.1, 20.0, "rad/s",
              "above this |velocity| only torque against the motion is allowed",
              per_joint=True, looser=+1),
    ParamSpec("fault_ramp_time", 0.25, 0.01, 2.0, "s",
              "after a fault the command ramps linearly to zero within this time", looser=+1),
    ParamSpec("watchdog_timeout", 0.05, 0.01, 1.0, "s",
              "an input older than max(3 control periods, this) is stale", looser=+1),
    ParamSpec("control_rate", 200.0, 10.0, 1000.0, "Hz",
              "rate of the control loop (fixed once the node runs)"),
)

LIMIT_SPEC_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in LIMIT_SPECS}


def per_joint_values(spec: ParamSpec, value: float | Sequence[float], n_joints: int) -> np.ndarray:
    """``value`` as an array of ``n_joints`` floats; a single value applies to every joint.

    Raises :class:`LimitError` naming ``spec`` when the length matches neither 1 nor ``n_joints``
    or any value is out of range.
    """
    values = np.array(value, dtype=float).reshape(-1)
    if values.size == 1:
        values = np.full(n_joints, values[0])
    elif values.size != n_joints:
        raise LimitError(
            f"{spec.name} has {values.size} values; expected 1 or one per joint ({n_joints})"
        )
    spec.check(values)
    return values


@dataclass(frozen=True, eq=False)
class SafetyLimits:
    """A validated, consistent set of limits for ``n_joints`` joints (arrays hold one value per
    joint). Build it with :meth:`from_values`, which refuses bad values with a reason."""

    max_torque: np.ndarray
    max_torque_rate: np.ndarray
    position_min: np.ndarray
    position_max: np.ndarray
    range_margin: np.ndarray
    max_velocity: np.ndarray
    fault_ramp_time: float
    watchdog_timeout: float
    control_rate: float

    @classmethod
    def from_values(cls, values: Mapping[str, float | Sequence[float]],
                    n_joints: int) -> SafetyLimits:
        """Validate ``values`` (missing names take their defaults) for ``n_joints`` joints.

        Raises :class:`LimitError` naming the setting when a value is out of range, a name is
        unknown, or two settings contradict each other (empty joint range; a fault ramp faster
        than the slew-rate limit allows).
        """
        if n_joints < 1:
            raise LimitError("the controller needs at least one joint")
        unknown = set(values) - set(LIMIT_SPEC_BY_NAME)
        if unknown:
            raise LimitError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        fields: dict[str, np.ndarray | float] = {}
        for spec in LIMIT_SPECS:
            raw = values.get(spec.name, spec.default)
            if spec.per_joint:
                fields[spec.name] = per_joint_values(spec, raw, n_joints)
            else:
                scalar = np.array(raw, dtype=float).reshape(-1)
                if scalar.size != 1:
                    raise LimitError(f"{spec.name} takes a single value, got {scalar.size}")
                spec.check(scalar)
                fields[spec.name] = float(scalar[0])
        limits = cls(**fields)
        limits._check_consistent()
        return limits

    def _check_consistent(self) -> None:
        for j in range(self.max_torque.size):
            span = self.position_max[j] - self.position_min[j]
            if span <= 2 * self.range_margin[j]:
                raise LimitError(
                    f"joint {j}: position_max - position_min = {span:g} rad must exceed "
                    f"2 × range_margin = {2 * self.range_margin[j]:g} rad"
                )
            ramp_rate = self.max_torque[j] / self.fault_ramp_time
            if ramp_rate > self.max_torque_rate[j]:
                raise LimitError(
                    f"joint {j}: ramping max_torque {self.max_torque[j]:g} N·m to zero in "
                    f"fault_ramp_time {self.fault_ramp_time:g} s needs {ramp_rate:g} N·m/s, "
                    f"more than max_torque_rate {self.max_torque_rate[j]:g} N·m/s; lengthen "
                    "fault_ramp_time, raise max_torque_rate or lower max_torque"
                )

    @property
    def n_joints(self) -> int:
        return int(self.max_torque.size)

    @property
    def stale_after(self) -> float:
        """Age (s) beyond which an input is stale: max(3 control periods, watchdog_timeout)."""
        return max(3.0 / self.control_rate, self.watchdog_timeout)

    def as_values(self) -> dict[str, list[float] | float]:
        """The limits as plain values, keyed like :data:`LIMIT_SPECS` (inverse of from_values)."""
        out: dict[str, list[float] | float] = {}
        for spec in LIMIT_SPECS:
            value = getattr(self, spec.name)
            out[spec.name] = value.tolist() if spec.per_joint else value
        return out


def loosened(old: SafetyLimits, new: SafetyLimits) -> list[str]:
    """Descriptions of every limit that ``new`` relaxes compared with ``old`` (empty if none).

    Used to refuse raising limits while the controller is enabled; tightening is always allowed.
    """
    changes = []
    for spec in LIMIT_SPECS:
        if spec.looser == 0:
            continue
        before = np.atleast_1d(getattr(old, spec.name))
        after = np.atleast_1d(getattr(new, spec.name))
        for index in np.flatnonzero(spec.looser * (after - before) > 0):
            where = f"{spec.name}[{index}]" if spec.per_joint else spec.name
            changes.append(f"{where} {before[index]:g} -> {after[index]:g} {spec.unit}")
    return changes
