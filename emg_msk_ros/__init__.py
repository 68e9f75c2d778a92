"""emg_msk_ros: surface EMG to muscle forces, joint kinematics and a safe assistive torque.

The ROS-free core lives in ``signal``, ``physics``, ``learning``, ``control`` and ``io``;
``nodes`` and ``runner`` hold the thin rclpy layer. Generated ROS 2 interfaces import as
``emg_msk_ros.msg`` once the package is built with CMake (see README).
"""

__version__ = "0.1.0"
