"""Musculoskeletal presets: YAML files in ``config/presets/`` loaded into a :class:`Preset`.

Schema ``emg_msk_ros/preset/1`` (SI units; angles rad)::

    schema: emg_msk_ros/preset/1
    name: knee
    source: "emg-msk import-osim ..."          # how the file was made
    opensim: {model, coordinate, posture: {coordinate: value}}   # optional provenance
    joint: {name, coordinate_sign (+1/-1), range: [lo, hi], inertia, damping, stiffness,
            rest_angle, mass, com_distance, hang_angle}
    activation: {model: first_order|recursive, tau_act, tau_deact, tau1, tau2,
                 shape_factor, delay}          # missing keys take the defaults
    curves: {fl_width, fv_af, fv_flen, fiber_damping}        # optional, Thelen 2003
    muscles:
      - {name, channel, max_isometric_force, optimal_fiber_length, tendon_slack_length,
         pennation_angle, lmt_poly: [c0, c1, ...],
         max_contraction_velocity, passive_strain, passive_shape, tendon_strain,  # optional
         opensim_name}                                                           # optional

A malformed file raises :class:`PresetError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from emg_msk_ros.paths import config_path
from emg_msk_ros.physics import activation as activation_dynamics
from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.activation import MODELS, ActivationParams
from emg_msk_ros.physics.backend import clip
from emg_msk_ros.physics.curves import CurveParams
from emg_msk_ros.physics.joint import Joint
from emg_msk_ros.physics.muscle import MuscleSet

SCHEMA = "emg_msk_ros/preset/1"
# Optional per-muscle curve parameters and their defaults (Thelen 2003; OpenSim
# Thelen2003Muscle): v_max 10 l0/s, passive strain 0.6 at F0, k_PE 5, tendon strain 0.04 at F0.
MUSCLE_DEFAULTS = {
    "max_contraction_velocity": 10.0,
    "passive_strain": 0.6,
    "passive_shape": 5.0,
    "tendon_strain": 0.04,
}
_MUSCLE_REQUIRED = ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length",
                    "pennation_angle")
_JOINT_FIELDS = ("inertia", "damping", "stiffness", "rest_angle", "mass", "com_distance",
                 "hang_angle")
_NONNEGATIVE = {"damping", "stiffness", "mass", "com_distance", "delay", "fiber_damping",
                "pennation_angle"}
_POSITIVE = {"inertia", "tau_act", "tau_deact", "tau1", "tau2", "fl_width", "fv_af",
             "max_isometric_force", "optimal_fiber_length", "tendon_slack_length",
             "max_contraction_velocity", "passive_strain", "passive_shape", "tendon_strain"}


class PresetError(ValueError):
    """A preset file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Preset:
    """A joint, its muscles and their activation dynamics; see the module docstring."""

    name: str
    source: str
    joint: Joint
    activation: ActivationParams
    curves: CurveParams
    muscles: MuscleSet
    muscle_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    opensim: dict = field(default_factory=dict)  # model, coordinate, posture it came from
    opensim_names: tuple[str, ...] = ()  # the OpenSim muscle of each muscle, where known
    path: Path | None = None
    sha256: str = ""  # of the preset file

    def lmt(self, theta):
        """Muscle-tendon lengths (m), shape (..., M); numpy or torch."""
        return hill.lmt(self.muscles, theta)

    def moment_arms(self, theta):
        """Moment arms r = -d l_MT / d theta (m), shape (..., M); numpy or torch."""
        return hill.moment_arms(self.muscles, theta)

    def muscle_forces(self, activation, theta, omega, muscles: MuscleSet | None = None):
        """Rigid-tendon Hill forces (N), shape (..., M), from activation (..., M), theta (rad)
        and omega (rad/s); ``muscles`` overrides the parameters (e.g. learnable tensors)."""
        return hill.hill_force(self.muscles if muscles is None else muscles, self.curves,
                               activation, theta, omega)

    def muscle_moments(self, forces, theta):
        """Moment of each muscle about the joint (N·m), shape (..., M)."""
        return self.moment_arms(theta) * forces

    def muscle_torque(self, forces, theta):
        """Net muscle torque (N·m), shape (...)."""
        return self.muscle_moments(forces, theta).sum(-1)

    def eom_residual(self, theta, omega, alpha, forces, external_torque=0.0):
        """I·theta'' + B·theta' + K(theta - theta0) + m g l_c sin(theta - theta_hang)
        - sum r_i F_i - tau_ext, in N·m; zero when forces and motion agree."""
        return self.joint.residual(theta, omega, alpha, self.muscle_torque(forces, theta),
                                   external_torque)

    def activate(self, excitation, dt: float, a0=None, params: ActivationParams | None = None):
        """Activation (T, ..., M) from excitation (T, ..., M) sampled every ``dt`` s."""
        return activation_dynamics.activate(excitation, dt, params or self.activation, a0)

    def with_muscles(self, muscles: MuscleSet) -> Preset:
        """The same preset with other muscle parameters (e.g. calibrated)."""
        return replace(self, muscles=muscles)

    def with_activation(self, params: ActivationParams) -> Preset:
        """The same preset with other activation parameters."""
        return replace(self, activation=params)

    def clip_angle(self, theta):
        """theta limited to the joint's range."""
        lo, hi = self.joint.range
        return clip(theta, min=lo, max=hi)


def preset_path(name_or_path: str | Path) -> Path:
    """The file a preset name ("knee") or path refers to."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        return Path(text)
    return config_path(f"presets/{text}.yaml")


def available_presets() -> list[str]:
    """Names of the presets shipped in ``config/presets/``."""
    return sorted(p.stem for p in config_path("presets").glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load and validate a preset by name (``"knee"``, ``"wrist"``) or YAML path."""
    path = preset_path(name_or_path)
    if not path.is_file():
        raise PresetError(f"preset {str(name_or_path)!r}: no file {path} "
                          f"(shipped presets: {', '.join(available_presets()) or 'none'})")
    raw = path.read_bytes()
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PresetError(f"{path}: not valid YAML: {exc}") from exc
    return parse_preset(document, str(path), path=path,
                        sha256=hashlib.sha256(raw).hexdigest())


def parse_preset(document: Any, where: str = "preset", path: Path | None = None,
                 sha256: str = "") -> Preset:
    """Validate a preset document (the parsed YAML) and build the :class:`Preset`."""
    check = _Checker(where)
    top = check.mapping(document, "", {"schema", "name", "source", "opensim", "joint",
                                       "activation", "curves", "muscles"})
    if top.get("schema") != SCHEMA:
        check.fail("schema", f"must be {SCHEMA!r}, got {top.get('schema')!r}")
    name = check.text(top, "name", "")
    source = str(top.get("source", ""))
    opensim = check.mapping(top.get("opensim", {}), "opensim", {"model", "coordinate", "posture"})
    joint = _parse_joint(check, top.get("joint"))
    activation = _parse_activation(check, top.get("activation", {}))
    curves = _parse_curves(check, top.get("curves", {}))
    muscles, names, channels, opensim_names = _parse_muscles(check, top.get("muscles"), joint)
    return Preset(name=name, source=source, joint=joint, activation=activation, curves=curves,
                  muscles=muscles, muscle_names=names, channel_names=channels,
                  opensim=dict(opensim), opensim_names=opensim_names, path=path, sha256=sha256)


class _Checker:
    """Field-by-field validation with errors that name the file and the field path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, problem: str):
        raise PresetError(f"{self.where}: field {field!r}: {problem}")

    def mapping(self, value: Any, field: str, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            self.fail(field or "(top level)", f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            prefix = f"{field}." if field else ""
            self.fail(prefix + str(unknown[0]),
                      f"unknown field (allowed: {', '.join(sorted(allowed))})")
        return value

    def text(self, mapping: dict, key: str, prefix: str) -> str:
        value = mapping.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(prefix + key, f"must be a non-empty string, got {value!r}")
        return value

    def number(self, mapping: dict, key: str, prefix: str, default: float | None = None) -> float:
        if key not in mapping:
            if default is None:
                self.fail(prefix + key, "is missing")
            return float(default)
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            self.fail(prefix + key, f"must be a finite number, got {value!r}")
        if key in _POSITIVE and not value > 0:
            self.fail(prefix + key, f"must be > 0, got {value!r}")
        if key in _NONNEGATIVE and value < 0:
            self.fail(prefix + key, f"must be >= 0, got {value!r}")
        return float(value)

    def numbers(self, mapping: dict, key: str, prefix: str, length: int | None = None) -> list:
        value = mapping.get(key)
        ok = isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value)
        if not ok or (length is not None and len(value) != length) or not value:
            size = f"{length} " if length else ""
            self.fail(prefix + key, f"must be a list of {size}finite numbers, got {value!r}")
        return [float(v) for v in value]


def _parse_joint(check: _Checker, value: Any) -> Joint:
    allowed = {"name", "coordinate_sign", "range", *_JOINT_FIELDS}
    joint = check.mapping(value, "joint", allowed)
    sign = joint.get("coordinate_sign", 1)
    if sign not in (1, -1) or isinstance(sign, bool):
        check.fail("joint.coordinate_sign", f"must be 1 or -1, got {sign!r}")
    lo, hi = check.numbers(joint, "range", "joint.", length=2)
    if not lo < hi:
        check.fail("joint.range", f"must be [low, high] with low < high, got {[lo, hi]}")
    values = {key: check.number(joint, key, "joint.") for key in _JOINT_FIELDS}
    return Joint(name=check.text(joint, "name", "joint."), range=(lo, hi),
                 coordinate_sign=int(sign), **values)


def _parse_activation(check: _Checker, value: Any) -> ActivationParams:
    defaults = ActivationParams()
    allowed = {"model", "tau_act", "tau_deact", "tau1", "tau2", "shape_factor", "delay"}
    act = check.mapping(value, "activation", allowed)
    model = act.get("model", defaults.model)
    if model not in MODELS:
        check.fail("activation.model", f"must be one of {', '.join(MODELS)}, got {model!r}")
    numbers = {key: check.number(act, key, "activation.", getattr(defaults, key))
               for key in sorted(allowed - {"model"})}
    if not -3.0 <= numbers["shape_factor"] <= 0.0:
        check.fail("activation.shape_factor",
                   f"must be in [-3, 0], got {numbers['shape_factor']}")
    return ActivationParams(model=model, **numbers)


def _parse_curves(check: _Checker, value: Any) -> CurveParams:
    defaults = CurveParams()
    allowed = {"fl_width", "fv_af", "fv_flen", "fiber_damping"}
    curves = check.mapping(value, "curves", allowed)
    numbers = {key: check.number(curves, key, "curves.", getattr(defaults, key))
               for key in allowed}
    if not numbers["fv_flen"] > 1.0:
        check.fail("curves.fv_flen", f"must be > 1, got {numbers['fv_flen']}")
    return CurveParams(**numbers)


def _parse_muscles(check: _Checker, value: Any, joint: Joint):
    if not isinstance(value, list) or not value:
        check.fail("muscles", "must be a non-empty list of muscles")
    allowed = {"name", "channel", "lmt_poly", "opensim_name", *_MUSCLE_REQUIRED,
               *MUSCLE_DEFAULTS}
    columns: dict[str, list[float]] = {key: [] for key in (*_MUSCLE_REQUIRED, *MUSCLE_DEFAULTS)}
    names, channels, polys, opensim_names = [], [], [], []
    for i, entry in enumerate(value):
        prefix = f"muscles[{i}]."
        entry = check.mapping(entry, f"muscles[{i}]", allowed)
        names.append(check.text(entry, "name", prefix))
        channels.append(check.text(entry, "channel", prefix))
        opensim_names.append(str(entry.get("opensim_name", "")))
        for key in _MUSCLE_REQUIRED:
            columns[key].append(check.number(entry, key, prefix))
        for key, default in MUSCLE_DEFAULTS.items():
            columns[key].append(check.number(entry, key, prefix, default))
        if columns["pennation_angle"][-1] >= math.pi / 2:
            check.fail(prefix + "pennation_angle", "must be < pi/2 rad")
        poly = check.numbers(entry, "lmt_poly", prefix)
        lengths = np.polynomial.polynomial.polyval(np.linspace(*joint.range, 201), poly)
        if np.any(lengths <= 0.0):
            check.fail(prefix + "lmt_poly", "gives l_MT <= 0 m within the joint range")
        polys.append(poly)
    for label, items in (("name", names), ("channel", channels)):
        duplicate = next((n for n in items if items.count(n) > 1), None)
        if duplicate is not None:
            check.fail(f"muscles[{items.index(duplicate)}].{label}",
                       f"duplicate {label} {duplicate!r}")
    width = max(len(p) for p in polys)
    table = np.array([p + [0.0] * (width - len(p)) for p in polys])
    muscles = MuscleSet(**{key: np.array(v) for key, v in columns.items()}, lmt_poly=table)
    return muscles, tuple(names), tuple(channels), tuple(opensim_names)
