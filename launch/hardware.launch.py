"""The node graph on real hardware: EMG from Lab Streaming Layer, torque to ros2_control.

    ros2 launch emg_msk_ros hardware.launch.py [lsl_name:=NAME] [controller:=effort_controller]
        [config:=FILE] [model:=NAME|DIR] [rviz:=true]

The driver reads an LSL stream of type EMG (source ``lsl``; needs pylsl). The assist
controller's command is remapped to ``/<controller>/commands``, the input of a ros2_control
ForwardCommandController with ``interface_name: effort`` (started by the exoskeleton's own
bring-up, which also runs the joint_state_broadcaster on ``/joint_states``). The controller
starts disabled: enable it with the ``assist/enable`` service once the estimate looks right.
Everything else is pipeline.launch.py, whose arguments (config, model, rviz) pass through.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "emg_msk_ros"


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("lsl_name", default_value="",
                              description="LSL stream name (empty: the first stream of type EMG)"),
        DeclareLaunchArgument("controller", default_value="effort_controller",
                              description="name of the ros2_control ForwardCommandController"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution(
                [FindPackageShare(PACKAGE), "launch", "pipeline.launch.py"])),
            launch_arguments={
                "source": "lsl",
                "lsl_name": LaunchConfiguration("lsl_name"),
                "command_topic": ["/", LaunchConfiguration("controller"), "/commands"],
            }.items()),
    ])
