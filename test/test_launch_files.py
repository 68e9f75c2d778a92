"""What can be checked of the launch files without ``launch`` (not installable here).

Parsed with ``ast``: they use the standard API, start only executables the build installs (plus
rviz2), set only parameters the nodes declare, use only launch arguments they declare, pass
included files only arguments those declare, and load the same parameters file as
``emg-msk run``. The rviz config shows topics the graph publishes in the frame it draws in.
"""

from __future__ import annotations

import ast
import os
import re
import sysconfig
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from emg_msk_ros.io import sources
from emg_msk_ros.nodes.common import TOPIC_MARKERS
from emg_msk_ros.nodes.emg_conditioner import EmgConditioner
from emg_msk_ros.nodes.emg_driver import EmgDriver
from emg_msk_ros.nodes.msk_estimator import MskEstimator
from emg_msk_ros.nodes.sim_exo import SimExo
from emg_msk_ros.paths import config_path, share_dir
from emg_msk_ros.runner import load_config

MODEL = os.environ.get("EMG_MSK_MODEL", "knee")
ROOT = Path(__file__).resolve().parent.parent
LAUNCH = share_dir() / "launch"
FILES = ("pipeline.launch.py", "replay.launch.py", "hardware.launch.py")
PACKAGE = "emg_msk_ros"


class LaunchFile:
    """The calls and constants of one launch file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.assigned = {  # name = expression, anywhere in the file
            target.id: node.value
            for node in ast.walk(self.tree) if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}

    def calls(self, name: str) -> list[ast.Call]:
        return [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]

    def value(self, node: ast.AST):
        """A constant, a list/tuple/dict of values, a variable's value; others: the AST."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.assigned:
            return self.value(self.assigned[node.id])
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {self.value(k): v for k, v in zip(node.keys, node.values)}
        return node

    def keyword(self, call: ast.Call, name: str):
        for kw in call.keywords:
            if kw.arg == name:
                return self.value(kw.value)
        return None

    def first_arg(self, call: ast.Call):
        return self.value(call.args[0]) if call.args else self.keyword(call, "name")

    def arguments(self) -> dict:
        """Declared launch argument -> default: DeclareLaunchArgument calls with a literal
        name, and the entries of a module-level ``ARGUMENTS = {name: (default, text)}`` table
        that a comprehension declares."""
        table = self.value(self.assigned["ARGUMENTS"]) if "ARGUMENTS" in self.assigned else {}
        declared = {name: self.value(entry)[0] for name, entry in table.items()}
        for call in self.calls("DeclareLaunchArgument"):
            if isinstance(name := self.first_arg(call), str):
                declared[name] = self.keyword(call, "default_value")
        return declared

    def declared_arguments(self) -> set[str]:
        return set(self.arguments())

    def configurations(self) -> set[str]:
        return {self.first_arg(c) for c in self.calls("LaunchConfiguration")}

    def path_join(self, call: ast.Call) -> Path:
        """A PathJoinSubstitution([FindPackageShare(PACKAGE), 'a', 'b']) as a path."""
        parts = self.value(call.args[0])
        share = parts[0]
        assert isinstance(share, ast.Call) and share.func.id == "FindPackageShare"
        assert self.value(share.args[0]) == PACKAGE
        return share_dir().joinpath(*parts[1:])

    def argument_default(self, name: str):
        return self.arguments()[name]


@pytest.fixture(scope="module")
def launch_files() -> dict[str, LaunchFile]:
    return {name: LaunchFile(LAUNCH / name) for name in FILES}


@pytest.fixture(scope="module")
def declared_parameters() -> dict[str, set[str]]:
    """The parameters each node really declares (instantiated with the pipeline's values; the
    simulated wearer, which pipeline.yaml does not start, with its defaults)."""
    from emg_msk_ros.nodes.assist_controller import AssistControllerNode

    config = load_config()
    classes = {"sim_exo": SimExo, "emg_driver": EmgDriver, "emg_conditioner": EmgConditioner,
               "msk_estimator": MskEstimator, "assist_controller": AssistControllerNode}
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        declared = {}
        for name, cls in classes.items():
            section = config.get(name, {})
            values = dict(section, **({"model": MODEL} if "model" in section else {}))
            node = cls(context=context, parameter_overrides=[
                Parameter(k, value=v) for k, v in values.items()])
            declared[name] = set(node.list_parameters([], 0).names)
            node.destroy_node()
        return declared
    finally:
        rclpy.shutdown(context=context)


def installed_executables() -> list[str]:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"set\(EMG_MSK_NODES ([^)]*)\)", cmake).group(1).split()


def test_launch_files_use_the_standard_api(launch_files):
    for launch in launch_files.values():
        modules = {node.module for node in ast.walk(launch.tree)
                   if isinstance(node, ast.ImportFrom)}
        assert modules <= {"launch", "launch.actions", "launch.conditions",
                           "launch.substitutions", "launch.launch_description_sources",
                           "launch_ros.actions", "launch_ros.substitutions",
                           "launch_ros.parameter_descriptions"}, launch.path
        assert any(isinstance(f, ast.FunctionDef) and f.name == "generate_launch_description"
                   for f in launch.tree.body)


def test_nodes_are_installed_executables_with_their_config_section(launch_files):
    executables = installed_executables()
    prefix = Path(sysconfig.get_paths()["data"]) / "lib" / PACKAGE
    sections = load_config()
    started = set()
    for launch in launch_files.values():
        for call in launch.calls("Node"):
            package = launch.keyword(call, "package")
            executable = launch.keyword(call, "executable")
            if package != PACKAGE:
                assert (package, executable) == ("rviz2", "rviz2"), launch.path
                continue
            assert executable in executables and (prefix / executable).is_file()
            name = launch.keyword(call, "name")
            assert name == executable and name in sections
            started.add(name)
    assert started == set(sections)


def test_node_parameters_are_declared_by_the_nodes(launch_files, declared_parameters):
    for name, values in load_config().items():  # the YAML itself: no typo goes unnoticed
        unknown = set(values) - declared_parameters[name]
        assert not unknown, (name, unknown)
    launch = launch_files["pipeline.launch.py"]
    for call in launch.calls("Node"):
        if launch.keyword(call, "package") != PACKAGE:
            continue
        name = launch.keyword(call, "name")
        config, *overrides = launch.keyword(call, "parameters")
        assert isinstance(config, ast.Call) and launch.first_arg(config) == "config"
        for override in overrides:
            assert set(override) <= declared_parameters[name], (name, set(override))


def test_launch_arguments_are_declared_where_used(launch_files):
    pipeline = launch_files["pipeline.launch.py"]
    for launch in launch_files.values():
        assert launch.configurations() <= launch.declared_arguments(), launch.path
    for name in ("replay.launch.py", "hardware.launch.py"):
        launch = launch_files[name]
        (include,) = launch.calls("IncludeLaunchDescription")
        source = include.args[0]
        assert launch.path_join(source.args[0]) == LAUNCH / "pipeline.launch.py"
        arguments = launch.keyword(include, "launch_arguments")
        passed = launch.value(arguments.func.value)  # {...}.items()
        assert set(passed) <= pipeline.declared_arguments(), (name, set(passed))
        assert passed["source"].value in sources.SOURCES
    assert pipeline.argument_default("source") in sources.SOURCES


def test_every_launch_file_loads_the_runners_parameters_file(launch_files):
    pipeline = launch_files["pipeline.launch.py"]  # the others include it
    assert pipeline.path_join(pipeline.argument_default("config")) == config_path("pipeline.yaml")
    assert load_config(config_path("pipeline.yaml")) == load_config()


def test_hardware_remaps_the_command_to_the_ros2_control_controller(launch_files):
    pipeline, hardware = launch_files["pipeline.launch.py"], launch_files["hardware.launch.py"]
    (controller,) = [c for c in pipeline.calls("Node")
                     if pipeline.keyword(c, "name") == "assist_controller"]
    ((source, target),) = pipeline.keyword(controller, "remappings")
    assert source == load_config()["assist_controller"]["command_topic"]
    assert pipeline.first_arg(target) == "command_topic"
    (include,) = hardware.calls("IncludeLaunchDescription")
    passed = hardware.value(hardware.keyword(include, "launch_arguments").func.value)
    slash, name, suffix = hardware.value(passed["command_topic"])
    assert (slash, hardware.first_arg(name), suffix) == ("/", "controller", "/commands")


def test_rviz_config_shows_the_graphs_topics_in_its_frame(launch_files):
    pipeline = launch_files["pipeline.launch.py"]
    (rviz,) = [c for c in pipeline.calls("Node") if pipeline.keyword(c, "package") == "rviz2"]
    flag, path = pipeline.keyword(rviz, "arguments")
    assert flag == "-d"
    document = yaml.safe_load(pipeline.path_join(path).read_text())
    manager = document["Visualization Manager"]
    topics = {d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert topics == {f"/{TOPIC_MARKERS}", "/assist/wrench"}
    config = load_config()
    frame = manager["Global Options"]["Fixed Frame"]
    assert frame == config["msk_estimator"]["frame_id"]
    assert config["assist_controller"]["wrench_frames"] == [frame]


def test_sim_exo_launch_starts_the_closed_loop_graph_of_its_config(declared_parameters):
    launch = LaunchFile(LAUNCH / "sim_exo.launch.py")
    sections = load_config(config_path("sim_exo.yaml"))
    assert launch.path_join(launch.argument_default("config")) == config_path("sim_exo.yaml")
    # the model argument overrides the config's: the same default, or the two would drift
    assert launch.argument_default("model") == sections["msk_estimator"]["model"] \
        == sections["emg_conditioner"]["model"]
    assert launch.configurations() <= launch.declared_arguments()
    executables = installed_executables()
    started = set()
    for call in launch.calls("Node"):
        if launch.keyword(call, "package") != PACKAGE:
            continue
        name = launch.keyword(call, "name")
        assert name == launch.keyword(call, "executable") and name in executables
        config, *overrides = launch.keyword(call, "parameters")
        assert isinstance(config, ast.Call) and launch.first_arg(config) == "config"
        for override in overrides:
            assert set(override) <= declared_parameters.get(name, set()), (name, override)
        started.add(name)
    assert started == set(sections) and "sim_exo" in started and "emg_driver" not in started
    for name, values in sections.items():
        if name in declared_parameters:
            assert set(values) <= declared_parameters[name], name
