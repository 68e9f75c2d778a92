"""Replay a recorded or simulated session through the node graph with its original timing.

    ros2 launch emg_msk_ros replay.launch.py bag:=SESSION [rate:=2.0] [config:=FILE]
        [model:=NAME|DIR] [rviz:=true]

The driver reads the session bag's ``/emg/raw`` (source ``bag``); everything else is
pipeline.launch.py, whose arguments (config, model, rviz) pass through.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "emg_msk_ros"


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="session bag folder to replay"),
        DeclareLaunchArgument("rate", default_value="1.0", description="replay speed factor"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution(
                [FindPackageShare(PACKAGE), "launch", "pipeline.launch.py"])),
            launch_arguments={"source": "bag", "bag_path": LaunchConfiguration("bag"),
                              "rate": LaunchConfiguration("rate")}.items()),
    ])
