"""The emg_msk_ros node graph: emg_driver → emg_conditioner → msk_estimator → assist_controller.

    ros2 launch emg_msk_ros pipeline.launch.py [config:=FILE] [model:=NAME|DIR] [rviz:=true]

By default the driver streams a simulated session in real time (source ``sim``); replay.launch.py
and hardware.launch.py include this file with another source. Every node reads its section of
``config`` (default: the package's config/pipeline.yaml, the file ``emg-msk run`` reads); the
launch arguments below override a few of those parameters.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "emg_msk_ros"
# Launch arguments besides ``config``: name -> (default, description).
ARGUMENTS = {
    "model": ("knee", "model folder, or a name under the package's models/"),
    "source": ("sim", "EMG source of the driver: sim, bag, file or lsl"),
    "bag_path": ("", "source bag: the session bag to replay"),
    "rate": ("1.0", "replay speed factor (sim, bag, file)"),
    "lsl_name": ("", "source lsl: stream name (empty: the first stream of type EMG)"),
    "command_topic": ("effort_controller/commands", "where the assist torque command goes"),
    "rviz": ("false", "start rviz2 with config/emg_msk.rviz"),
}


def generate_launch_description():
    config = LaunchConfiguration("config")
    model = ParameterValue(LaunchConfiguration("model"), value_type=str)
    arguments = [DeclareLaunchArgument(
        "config", description="ROS 2 parameters file of the graph",
        default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                            "pipeline.yaml"]))]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=text)
                  for name, (default, text) in ARGUMENTS.items()]
    nodes = [
        Node(package=PACKAGE, executable="emg_driver", name="emg_driver", output="screen",
             parameters=[config, {
                 "source": LaunchConfiguration("source"),
                 "bag_path": ParameterValue(LaunchConfiguration("bag_path"), value_type=str),
                 "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),
                 "lsl_name": ParameterValue(LaunchConfiguration("lsl_name"), value_type=str),
             }]),
        Node(package=PACKAGE, executable="emg_conditioner", name="emg_conditioner",
             output="screen", parameters=[config, {"model": model}]),
        Node(package=PACKAGE, executable="msk_estimator", name="msk_estimator",
             output="screen", parameters=[config, {"model": model}]),
        Node(package=PACKAGE, executable="assist_controller", name="assist_controller",
             output="screen", parameters=[config],
             remappings=[("effort_controller/commands", LaunchConfiguration("command_topic"))]),
        Node(package="rviz2", executable="rviz2", name="rviz2",
             arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                                    "emg_msk.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ]
    return LaunchDescription(arguments + nodes)
