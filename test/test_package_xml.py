"""package.xml declares every third-party module the installed code imports at run time."""

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import emg_msk_ros
from emg_msk_ros.paths import share_dir

# Python module -> rosdep key (or ROS package name) that provides it.
PROVIDERS = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "torch": "python3-torch",
    "onnxruntime": "python3-onnxruntime-pip",
    "onnx": "python3-onnx-pip",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "rclpy": "rclpy",
    "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs",
    "visualization_msgs": "visualization_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "std_srvs": "std_srvs",
    "builtin_interfaces": "builtin_interfaces",
    "rcl_interfaces": "rcl_interfaces",
    "lifecycle_msgs": "lifecycle_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python",
}
# Optional extras, imported only inside the feature that needs them, with a clear error when
# absent (documented in the README): not run-time dependencies of the ROS package.
OPTIONAL = {"opensim", "pylsl"}
RUNTIME_TAGS = ("depend", "exec_depend")


def declared(package_xml: Path) -> set[str]:
    root = ET.parse(package_xml).getroot()
    return {el.text.strip() for tag in RUNTIME_TAGS for el in root.findall(tag)}


def imported_modules(files) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(Path(path).name)
    return found


def missing_dependencies(files, package_xml: Path) -> list[str]:
    have = declared(package_xml)
    problems = []
    for module, where in sorted(imported_modules(files).items()):
        if module in sys.stdlib_module_names or module == "emg_msk_ros" or module in OPTIONAL:
            continue
        key = PROVIDERS.get(module)
        if key is None:
            problems.append(f"{module} (imported by {sorted(where)}) has no known provider")
        elif key not in have:
            problems.append(f"{module} needs <exec_depend>{key}</exec_depend> ({sorted(where)})")
    return problems


def runtime_sources() -> list[Path]:
    """The package's own Python files (not rosidl's generated msg/, covered by
    rosidl_default_runtime) and the launch files."""
    package = Path(emg_msk_ros.__file__).parent
    own = [p for p in package.rglob("*.py") if p.relative_to(package).parts[0] != "msg"]
    return sorted(own) + sorted((share_dir() / "launch").glob("*.py"))


def test_every_runtime_import_is_declared():
    assert runtime_sources(), "no sources found"
    assert missing_dependencies(runtime_sources(), share_dir() / "package.xml") == []


def test_check_catches_an_undeclared_import(tmp_path):
    xml = (share_dir() / "package.xml").read_text().replace(
        "<exec_depend>python3-scipy</exec_depend>", "")
    (tmp_path / "package.xml").write_text(xml)
    source = tmp_path / "mod.py"
    source.write_text("import os\nfrom scipy import signal\nimport numpy as np\n")
    assert missing_dependencies([source], tmp_path / "package.xml") == [
        "scipy needs <exec_depend>python3-scipy</exec_depend> (['mod.py'])"]


@pytest.mark.parametrize("module", ["torch", "onnxruntime", "onnx", "rosbags"])
def test_core_dependencies_are_declared(module):
    assert PROVIDERS[module] in declared(share_dir() / "package.xml")


def test_package_xml_is_valid_format_3():
    from catkin_pkg.package import parse_package

    package = parse_package(share_dir() / "package.xml")
    assert package.package_format == 3
    assert package.name == "emg_msk_ros"
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]
