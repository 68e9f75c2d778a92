"""Shared fixtures. Every test process keeps DDS (in a domain of its own) and LSL on loopback,
and ONNX Runtime's telemetry off."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

# Before anything can import rclpy: discovery stays on this machine, and this run gets its own
# ROS_DOMAIN_ID (0..101 are valid everywhere) so parallel runs and other sessions never mix.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
# Before anything can import onnxruntime: no telemetry off the machine (serving sets it too).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from emg_msk_ros.io import lsl_config  # noqa: E402

# Before anything can load liblsl: LSL stays on loopback (the package's lsl_api.cfg).
os.environ[lsl_config.ENV] = str(lsl_config.loopback_config())

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def test_data() -> Path:
    """The folder of small real-data files copied into the repo (see each SOURCE.md)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: the installed ``benchmarks/<name>.py`` as a module (``emg-msk
    bench`` loads it by path, so it is not importable as a package)."""
    from emg_msk_ros.paths import share_dir

    loaded = []

    def load(name: str):
        spec = importlib.util.spec_from_file_location(
            f"{name}_under_test", share_dir() / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        loaded.append(spec.name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


# Recorded data a benchmark's quick run reads (the copies in test/data), by benchmark name.
QUICK_DATA = {"real-knee": ["--data", str(TEST_DATA / "uci_lower_limb")]}


@pytest.fixture(scope="session")
def quick_bench(tmp_path_factory):
    """``quick_bench(name)``: the finished ``emg-msk bench NAME --quick --json`` (a
    CompletedProcess; stdout the JSON), run once per test session in a folder of its own (its
    ``cwd``, where the benchmark writes any output files)."""
    from emg_msk_ros.benchmarking import THREAD_LIMITS

    runs = {}

    def run(name: str) -> subprocess.CompletedProcess:
        if name not in runs:
            cwd = tmp_path_factory.mktemp(f"bench-{name}")
            command = [str(Path(sys.executable).parent / "emg-msk"), "bench", name, "--quick",
                       "--json", *QUICK_DATA.get(name, [])]
            # one BLAS/OpenMP thread already: the benchmarks that rerun themselves so
            # (benchmarking.rerun_single_threaded) then skip the second interpreter start
            env = dict(os.environ, **{limit: "1" for limit in THREAD_LIMITS})
            runs[name] = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                                        text=True, timeout=600)
            runs[name].cwd = cwd
        return runs[name]

    return run


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context, initialised for this test and always shut down."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@pytest.fixture
def executor(rclpy_context):
    """A single-threaded executor on the test's context; its nodes are destroyed afterwards."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=rclpy_context)
    try:
        yield executor
    finally:
        for node in list(executor.get_nodes()):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()


@pytest.fixture(scope="session")
def pylsl():
    """pylsl, once liblsl has loaded the loopback-only config (a test using it fails if not)."""
    module = lsl_config.import_pylsl()
    assert lsl_config.loaded().path.resolve() == lsl_config.loopback_config().resolve()
    return module


@pytest.fixture
def lsl_name(request) -> str:
    """A stream name of this test and process only (parallel runs share the loopback)."""
    return f"emg_msk_test_{request.node.name[:40]}_{os.getpid()}"


@pytest.fixture(scope="session")
def state_aided_session():
    """A short simulated knee session (encoder readings and truth) for state-aided tests."""
    from emg_msk_ros.physics.simulate import simulate_session

    return simulate_session("knee", 10.0, seed=3)


@pytest.fixture(scope="session")
def state_aided_model(tmp_path_factory, state_aided_session):
    """A state-aided knee model folder (100 ms ahead) trained for one short epoch: what the
    tests check is the plumbing, not the accuracy."""
    from emg_msk_ros.learning.settings import load_training_settings
    from emg_msk_ros.learning.train import train_on_recordings
    from emg_msk_ros.physics.preset import load_preset
    from emg_msk_ros.signal.config import load_settings

    settings = load_training_settings().replace("optim", state_aided_max_epochs=1,
                                                min_epoch_batches=2)
    settings = settings.replace("data", min_train_s=1.0, stride=4)
    trained = train_on_recordings([state_aided_session], ["s3"], load_preset("knee"), settings,
                                  load_settings(), horizon_ms=100.0)
    return trained.save(tmp_path_factory.mktemp("models") / "knee-state")
