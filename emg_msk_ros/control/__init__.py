"""Assist laws and the torque safety layer (ROS-free).

``limits`` (validated limit settings and their ranges), ``laws`` (desired torque from the
estimate), ``safety`` (state machine, watchdog, clamp/slew/range/velocity limits) and
``controller`` (all of it as one step function with an explicit clock).
"""
