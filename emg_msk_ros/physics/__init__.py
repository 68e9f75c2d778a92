"""Musculoskeletal physics: Hill-type muscles, activation and joint dynamics (numpy/torch).

Units are SI throughout: angles rad (flexion positive), lengths m, forces N, torques N·m
(positive toward positive theta), times s. The equations are written once
(:mod:`~emg_msk_ros.physics.backend`) and run on numpy arrays, torch tensors
(differentiable) and Python floats alike.

Public API (stable; the learning code builds on it):

``preset`` — ``load_preset(name_or_path) -> Preset`` ("knee", "wrist" or a YAML path),
    ``parse_preset(document)``, ``PresetError``, ``available_presets()``.
    ``Preset``: ``name``, ``joint`` (:class:`~emg_msk_ros.physics.joint.Joint`),
    ``activation`` (``ActivationParams``), ``curves`` (``CurveParams``), ``muscles``
    (``MuscleSet``: per-muscle arrays), ``muscle_names``, ``channel_names``,
    ``opensim_names``, ``sha256``; methods (numpy or torch inputs):
    ``lmt(theta)``, ``moment_arms(theta)`` -> (..., M);
    ``muscle_forces(activation, theta, omega, muscles=None)`` -> (..., M) N;
    ``muscle_moments(forces, theta)``, ``muscle_torque(forces, theta)``;
    ``eom_residual(theta, omega, alpha, forces, external_torque=0)`` -> N·m;
    ``activate(excitation, dt, a0=None, params=None)`` -> (T, ..., M);
    ``with_muscles(muscles)``, ``with_activation(params)``.
``muscle`` — ``MuscleSet`` (``like(tensor)`` for torch copies, ``scaled(strength,
    fiber_length, tendon_length)`` for bounded/learnable parameters, ``single(i)``),
    ``geometry``, ``lmt``, ``moment_arms``, ``hill_force``, ``rigid_force``,
    ``rigid_fiber_state``, ``fiber_force``, compliant-tendon ``compliant_*`` functions.
``curves`` — Thelen (2003) ``force_length_active``, ``force_length_passive``,
    ``force_velocity`` (+ ``_slope``, ``_inverse``), ``tendon_force_length``, ``CurveParams``.
``activation`` — ``ActivationParams``, ``activate``, ``first_order``, ``recursive``,
    ``nonlinearity``, ``delayed``, ``first_order_step``, ``ActivationFilter`` (streaming).
``joint`` — ``Joint`` (``gravity_torque``, ``passive_torque``, ``residual``,
    ``required_muscle_torque``), ``GRAVITY``.
``forward`` — ``simulate_forward(preset, excitation, dt, theta0, ...) -> ForwardResult``,
    ``ForwardIntegrator`` (one step at a time; rigid or compliant tendon).
``inverse`` — ``inverse_dynamics(preset, theta, dt, external_torque=0)``,
    ``derivatives(theta, dt)``.
``static_opt`` — ``static_optimization(preset, theta, omega, torque, baseline=None)``,
    ``solve_activations``, ``torque_coefficients``.
``baseline`` — ``EmgDrivenModel`` (streaming EMG-driven estimate), ``calibrate`` (bounded
    CEINMS-style identification), ``CalibrationBounds``, ``CalibrationResult``.
``motions`` — ``simulate_motion``, ``MotionSettings`` (regime slow|fast|mixed, max_speed).
``synth_emg`` — ``synthesize_emg``, ``EmgSynthSettings``.
``encoder`` — ``EncoderSettings``, ``JointEncoder`` (one reading at a time),
    ``measure_trajectory``: the exoskeleton's joint sensor (rate, quantisation, noise).
``simulate`` — ``simulate_session(preset, duration, seed, ...) -> Recording`` and the
    ``emg-msk simulate`` command; ``osim_import`` — ``emg-msk import-osim``.
"""
