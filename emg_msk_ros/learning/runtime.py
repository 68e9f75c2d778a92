"""Serving a trained network with ONNX Runtime: ``model.onnx``, checked against model.yaml, run on
the CPU. Needs no torch (training does; the nodes do not import it).

The contract between a model kind and serving; every kind goes through it, and serving holds no
forward code of any kind:

1. The torch module says what its graph looks like: ``module.onnx_io()`` returns its inputs
   and its outputs, name -> shape without the batch axis, inputs in ``forward``'s argument
   order. ``forward`` returns either one tensor per output, in that order, or a single
   (B, rows, ...) tensor whose axis 1 stacks the outputs' rows in that order.
2. :func:`emg_msk_ros.learning.export.export_onnx` (``emg-msk train`` and ``emg-msk export``)
   writes one graph with exactly these inputs and one output per name (a single result split
   by rows), all float32 with a leading batch axis of any size, and checks it against
   torch. model.yaml's ``onnx`` section records the file, its size and sha256, the opset, the
   exporter and ``inputs`` / ``outputs``: lists of ``{name, shape}`` (shape without the batch
   axis), in graph order.
3. :class:`OnnxModel` refuses a file whose size, sha256 or graph (names, shapes, float32)
   differs from that section, naming the file and the field; :meth:`OnnxModel.run` takes the
   inputs by name and returns the outputs by name.
4. What the names mean belongs to the consumer: the EMG estimator
   (:class:`emg_msk_ros.learning.inference.Estimator`) feeds ``excitation`` (C, W) and reads
   ``angle`` (1, K, rad) and ``force`` (M, K, N); the state-aided one
   (:class:`emg_msk_ros.learning.state_inference.StateAidedEstimator`) also feeds
   ``joint_state`` (2, W: angle rad, velocity rad/s) and reads ``angle`` (H + 1, K, rad) and
   ``force`` (M, H + 1, K, N), the joint and forces 0..H steps ahead. Each estimator's
   ``graph_io()`` states what it needs and a graph that differs is refused.

Session options, set on purpose: the CPU execution provider only; ``threads`` intra-op threads
(default 1: at this network size the per-operator overhead, not arithmetic, sets the time, and a
node shares the CPU with the rest of the graph), one inter-op thread and sequential execution
(the graph is a chain); every graph optimisation (constant folding, operator fusion); idle pool
threads do not spin (spinning would take CPU from the other nodes for nothing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ONNX Runtime (1.29 on) sends usage telemetry from Linux too, to a Microsoft server, unless
# ORT_DISABLE_TELEMETRY=1 is set before it initialises: an estimator on an exoskeleton must not
# reach outside its machine of its own accord (and tests and benchmarks here keep to loopback).
# A value already set is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort  # noqa: E402  (after the opt-out, which it reads on initialising)

from emg_msk_ros.learning.metadata import META_FILE, Fields, ModelError, read_checked_file

SECTION = "onnx"  # model.yaml's section describing model.onnx
EXPORT_HINT = "add model.onnx to the folder with: emg-msk export {folder}"
_FLOAT = "tensor(float)"


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its name and its shape without the leading batch axis."""

    name: str
    shape: tuple[int, ...]

    def to_mapping(self) -> dict:
        """The model.yaml form, ``{name, shape}``."""
        return {"name": self.name, "shape": list(self.shape)}


def tensor_specs(check: Fields, section: Mapping, field: str) -> tuple[TensorSpec, ...]:
    """``section[field]``: a non-empty list of ``{name, shape}`` with unique names and positive
    integer dimensions; :class:`ModelError` naming the field otherwise."""
    entries = check.get(section, field, list, SECTION)
    where = f"{SECTION}.{field}"
    specs = []
    for entry in entries:
        if (not isinstance(entry, dict) or set(entry) != {"name", "shape"}
                or not isinstance(entry["name"], str) or not entry["name"]
                or not isinstance(entry["shape"], list) or not entry["shape"]
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                           for d in entry["shape"])):
            check.fail(where, f"each entry must be {{name, shape: [positive ints]}}, "
                       f"got {entry!r}")
        specs.append(TensorSpec(entry["name"], tuple(entry["shape"])))
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names):
        check.fail(where, f"must list one or more uniquely named tensors, got {names}")
    return tuple(specs)


def session_options(threads: int) -> ort.SessionOptions:
    """The session options of every model (see the module docstring)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxModel:
    """An ONNX graph in an ONNX Runtime session, checked against the inputs and outputs
    model.yaml declares; :meth:`run` maps input names to arrays and returns output names to
    arrays. ``where`` names the file in errors."""

    def __init__(self, data: bytes, inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...], where: str, threads: int = 1) -> None:
        if not 1 <= threads <= 64:
            raise ValueError(f"threads must be in 1..64, got {threads}")
        self.inputs, self.outputs, self.where = tuple(inputs), tuple(outputs), where
        try:
            self._session = ort.InferenceSession(data, session_options(threads),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any failure to load means an unusable file
            raise ModelError(f"{where}: not a loadable ONNX model ({exc})") from exc
        self._compare("inputs", self._session.get_inputs(), self.inputs)
        self._compare("outputs", self._session.get_outputs(), self.outputs)
        self._names = [spec.name for spec in self.outputs]
        try:  # shapes the graph only knows when it runs
            result = self.run({s.name: np.zeros((1, *s.shape), np.float32) for s in self.inputs})
        except Exception as exc:  # noqa: BLE001 - the graph fails on its declared inputs
            raise ModelError(f"{where}: fails on the inputs model.yaml field "
                             f"'{SECTION}.inputs' declares ({exc})") from exc
        for spec in self.outputs:
            if result[spec.name].shape != (1, *spec.shape):
                raise ModelError(f"{where}: output {spec.name!r} has shape "
                                 f"{result[spec.name].shape[1:]} per window, model.yaml field "
                                 f"'{SECTION}.outputs' declares {spec.shape}")

    def _compare(self, field: str, found, declared: tuple[TensorSpec, ...]) -> None:
        """Refuse a graph whose tensors differ from model.yaml's (name, order, shape, float32)."""
        graph = [(arg.name, arg.type, list(arg.shape[1:])) for arg in found]
        expected = [(spec.name, _FLOAT, list(spec.shape)) for spec in declared]
        # a dimension the graph leaves symbolic (str or None) is checked when it runs
        same = len(graph) == len(expected) and all(
            name == e_name and kind == e_kind and len(dims) == len(e_dims)
            and all(not isinstance(d, int) or d == e for d, e in zip(dims, e_dims))
            for (name, kind, dims), (e_name, e_kind, e_dims) in zip(graph, expected))
        if not same:
            raise ModelError(f"{self.where}: the graph's {field} {graph} differ from model.yaml "
                             f"field '{SECTION}.{field}' {expected} (a model.onnx of another "
                             "model?)")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for float32 inputs by name, each (batch, *shape)."""
        return dict(zip(self._names, self._session.run(self._names, feeds)))


def load_onnx(folder: Path, meta: Mapping, threads: int = 1) -> OnnxModel:
    """The model folder's ``model.onnx`` as model.yaml (``meta``, validated) describes it;
    :class:`ModelError` naming the file and the field, and for a folder written before serving
    moved to ONNX Runtime, the command that adds the file."""
    hint = EXPORT_HINT.format(folder=folder)
    check = Fields(str(folder / META_FILE))
    if SECTION not in meta:
        check.fail(SECTION, f"is missing: the folder predates serving with ONNX Runtime; {hint}")
    section = check.get(meta, SECTION, dict)
    check.positive(section, "opset", int, SECTION)
    data = read_checked_file(folder, meta, SECTION, hint)
    return OnnxModel(data, tensor_specs(check, section, "inputs"),
                     tensor_specs(check, section, "outputs"),
                     str(folder / section["file"]), threads)
