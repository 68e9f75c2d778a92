"""Every benchmark of the registry (``emg_msk_ros.benchmarking.find_benchmarks``) runs in its
``--quick`` mode: ``emg-msk bench NAME --quick --json`` exits 0 and prints its numbers as JSON.

The convention (README, "Benchmarks"): every benchmark accepts ``--quick`` (a smoke run of a
few seconds through all of its code paths) and ``--json``. A benchmark that needs recorded data
is given the copies in ``test/data`` (``QUICK_DATA`` in conftest.py). A new script in
``benchmarks/`` is picked up here without any change.
"""

from __future__ import annotations

import json

import pytest

from emg_msk_ros.benchmarking import find_benchmarks


@pytest.mark.parametrize("name", sorted(find_benchmarks()))
def test_quick_mode_runs_and_prints_json(name, quick_bench):
    run = quick_bench(name)
    assert run.returncode == 0, f"emg-msk bench {name} --quick failed:\n{run.stderr[-4000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
    numbers = json.loads(run.stdout)
    assert isinstance(numbers, dict) and numbers, run.stdout[:2000]

