"""One rotational degree of freedom driven by muscles: the equation of motion.

    I·theta'' + B·theta' + K·(theta - theta0) + m·g·l_c·sin(theta - theta_hang)
        = sum_i r_i(theta)·F_i + tau_ext

theta in rad (flexion positive), torques in N·m, positive toward positive theta. The segment
distal to the joint hangs straight down at ``hang_angle``, so gravity pulls it back there.
Works on numpy arrays and torch tensors alike. A second degree of freedom would add a
``Joint`` per coordinate and a moment-arm matrix; nothing here assumes there is only one.
"""

from __future__ import annotations

from dataclasses import dataclass

from emg_msk_ros.physics.backend import like, namespace

GRAVITY = 9.81  # m/s^2


@dataclass(frozen=True)
class Joint:
    """Joint parameters (SI units: rad, kg, m, N·m)."""

    name: str
    range: tuple[float, float]  # rad, (lowest, highest) theta
    inertia: float  # kg·m^2 about the joint axis, of everything distal to the joint
    damping: float  # N·m·s/rad
    stiffness: float  # N·m/rad, about rest_angle
    rest_angle: float  # rad
    mass: float  # kg, distal segment(s)
    com_distance: float  # m, joint axis to the distal centre of mass
    hang_angle: float  # rad, theta at which the distal segment hangs straight down
    coordinate_sign: int = 1  # theta = coordinate_sign * (OpenSim coordinate)

    def __post_init__(self) -> None:
        lo, hi = self.range
        if not lo < hi:
            raise ValueError(f"joint {self.name!r}: range must be (low, high), got {self.range}")
        if self.coordinate_sign not in (-1, 1):
            raise ValueError(f"joint {self.name!r}: coordinate_sign must be +1 or -1")

    def gravity_torque(self, theta):
        """Moment of gravity about the joint, N·m (restoring toward ``hang_angle``)."""
        xp = namespace(theta)
        theta = like(theta, theta)
        return -self.mass * GRAVITY * self.com_distance * xp.sin(theta - self.hang_angle)

    def passive_torque(self, theta, omega):
        """Joint torque from damping, stiffness and gravity, N·m (acts on the segment)."""
        return (self.gravity_torque(theta) - self.damping * omega
                - self.stiffness * (theta - self.rest_angle))

    def residual(self, theta, omega, alpha, muscle_torque, external_torque=0.0):
        """Equation-of-motion residual, N·m: I·alpha - passive - muscle torque - tau_ext."""
        return (self.inertia * alpha - self.passive_torque(theta, omega) - muscle_torque
                - external_torque)

    def required_muscle_torque(self, theta, omega, alpha, external_torque=0.0):
        """Net muscle torque (N·m) that produces the given motion (inverse dynamics)."""
        return self.residual(theta, omega, alpha, 0.0, external_torque)
