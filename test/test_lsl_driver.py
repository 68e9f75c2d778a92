"""The driver on an LSL stream from a real pylsl outlet (loopback LSL and DDS; see conftest.py):
it waits for a stream that is not there yet, says so on /diagnostics, resumes when a lost
stream comes back, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from emg_msk_ros.io.lsl_stream import lsl_outlet, play
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import sensor_qos
from emg_msk_ros.nodes.emg_driver import EmgDriver

RATE = 2000.0
CHANNELS = ["RF", "VM", "BF", "ST"]
DEADLINE_S = 20.0  # bound on waiting for an event; only reached when the test fails


class Amplifier:
    """An amplifier's LSL app: an outlet playing a recording in 10-sample chunks in a thread."""

    def __init__(self, pylsl, name: str, source_id: str, seconds: float = 60.0) -> None:
        emg = (np.random.default_rng(1).standard_normal((int(seconds * RATE), len(CHANNELS)))
               * 1e-4).astype(np.float32)
        self.outlet = lsl_outlet(pylsl, name, CHANNELS, RATE, chunk=10, source_id=source_id)
        recording = Recording(emg=emg.astype(np.float64), sample_rate=RATE,
                              channel_names=CHANNELS)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=lambda: play(pylsl, self.outlet, recording, 10, self.stop), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=DEADLINE_S)
        del self.outlet  # the outlet goes: its stream is lost to consumers


def driver_params(name: str):
    values = dict(source="lsl", lsl_name=name, lsl_timeout=0.2, min_subscribers=0,
                  diagnostics_period=0.1, stale_timeout=0.3)
    return [Parameter(k, value=v) for k, v in values.items()]


def spin_until(executor, done, what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        executor.spin_once(timeout_sec=0.02)


def test_driver_waits_for_its_stream_and_recovers_when_it_comes_back(rclpy_context, executor,
                                                                      pylsl, lsl_name):
    driver = EmgDriver(context=rclpy_context, parameter_overrides=driver_params(lsl_name))
    probe = rclpy.create_node("lsl_probe", context=rclpy_context)
    raw, statuses = [], []
    probe.create_subscription(EmgArray, "emg/raw", raw.append, sensor_qos(1000))
    probe.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda msg: statuses.extend(s for s in msg.status if s.name.startswith("emg_driver")), 100)
    executor.add_node(driver)
    executor.add_node(probe)

    def seen(level, text):
        return lambda: any(s.level == level and text in s.message for s in statuses)

    def ok_since(count):
        return lambda: any(s.level == DiagnosticStatus.OK for s in statuses[count:])

    # started before its stream: configured all the same, and says what it waits for
    assert driver.trigger_configure() == TransitionCallbackReturn.SUCCESS
    driver.trigger_activate()
    spin_until(executor, seen(DiagnosticStatus.WARN,
                              f"waiting for the LSL stream of type EMG named {lsl_name!r}"),
               "a WARN saying what the driver waits for")
    first = Amplifier(pylsl, lsl_name, f"{lsl_name}_1")
    try:
        spin_until(executor, lambda: sum(m.num_samples for m in raw) >= 2000, "EMG")
        spin_until(executor, ok_since(len(statuses)), "diagnostics OK while streaming")
    finally:
        first.close()
    spin_until(executor, seen(DiagnosticStatus.WARN, "lost; waiting for it to come back"),
               "a WARN saying the stream was lost")
    before = len(raw)
    second = Amplifier(pylsl, lsl_name, f"{lsl_name}_2")  # the app restarts: a new source id
    try:
        spin_until(executor, lambda: sum(m.num_samples for m in raw[before:]) >= 2000,
                   "EMG after the restart")
        spin_until(executor, ok_since(len(statuses)), "diagnostics OK again")
    finally:
        second.close()
    assert driver.health.error is None
    assert raw[0].first_sample_index == 0 and list(raw[0].channel_names) == CHANNELS
    index = [(m.first_sample_index, m.num_samples) for m in raw]
    jumps = [k for k in range(1, len(index)) if index[k][0] != sum(index[k - 1])]
    assert len(jumps) == 1  # consecutive but where the stream was away ...
    assert index[jumps[0]][0] > sum(index[jumps[0] - 1])  # ... and onward


def test_ctrl_c_stops_the_standalone_driver_without_an_error(pylsl, lsl_name, tmp_path):
    """SIGINT shuts the context down before the node is destroyed: a chunk pulled meanwhile
    must not be published on the dead context (it used to fail every stop)."""
    amplifier = Amplifier(pylsl, lsl_name, lsl_name)
    try:
        driver = subprocess.Popen(  # cwd: import the installed package, not the source tree
            [sys.executable, "-m", "emg_msk_ros.nodes.emg_driver", "--ros-args",
             "-p", "source:=lsl", "-p", f"lsl_name:={lsl_name}", "-p", "min_subscribers:=0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(driver.stdout), daemon=True)
        reader.start()
        configured = f"source lsl: 4 channels ({', '.join(CHANNELS)})"
        try:
            end = time.monotonic() + DEADLINE_S
            while not any(configured in line for line in lines) and time.monotonic() < end:
                time.sleep(0.01)
            time.sleep(0.5)  # streaming now: let it publish a while
            driver.send_signal(signal.SIGINT)
            driver.wait(timeout=DEADLINE_S)
            reader.join(timeout=DEADLINE_S)
        finally:
            driver.kill()
    finally:
        amplifier.close()
    output = "".join(lines)
    assert configured in output and driver.returncode == 0, output
    assert "failed" not in output and "context is invalid" not in output, output
