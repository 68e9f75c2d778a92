"""The closed loop in simulation: a simulated person wearing the exoskeleton in the graph.

    ros2 launch emg_msk_ros sim_exo.launch.py [config:=FILE] [model:=NAME|DIR] [rviz:=true]

``sim_exo`` stands in for the EMG amplifier (it publishes ``emg/raw``) and for the exoskeleton
(it takes the assist controller's effort commands and publishes ``joint_states``); the
conditioner, estimator and assist controller are those of pipeline.launch.py. Every node reads
its section of ``config`` (default: the package's config/sim_exo.yaml, the file
``emg-msk run --config`` and the closed-loop demo read). The controller starts disabled: call
``assist/enable`` to close the loop.
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
    "model": ("knee-state", "model folder, or a name under the package's models/ (knee-state: "
              "EMG plus the exoskeleton's joint_states; knee: EMG only)"),
    "rviz": ("false", "start rviz2 with config/emg_msk.rviz"),
}


def generate_launch_description():
    config = LaunchConfiguration("config")
    model = ParameterValue(LaunchConfiguration("model"), value_type=str)
    arguments = [DeclareLaunchArgument(
        "config", description="ROS 2 parameters file of the closed-loop graph",
        default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                            "sim_exo.yaml"]))]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=text)
                  for name, (default, text) in ARGUMENTS.items()]
    nodes = [
        Node(package=PACKAGE, executable="sim_exo", name="sim_exo", output="screen",
             parameters=[config]),
        Node(package=PACKAGE, executable="emg_conditioner", name="emg_conditioner",
             output="screen", parameters=[config, {"model": model}]),
        Node(package=PACKAGE, executable="msk_estimator", name="msk_estimator",
             output="screen", parameters=[config, {"model": model}]),
        Node(package=PACKAGE, executable="assist_controller", name="assist_controller",
             output="screen", parameters=[config]),
        Node(package="rviz2", executable="rviz2", name="rviz2",
             arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                                    "emg_msk.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ]
    return LaunchDescription(arguments + nodes)
