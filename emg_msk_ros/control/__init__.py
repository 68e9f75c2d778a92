"""Assist laws and the torque safety layer (ROS-free)."""
