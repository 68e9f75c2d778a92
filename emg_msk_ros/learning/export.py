"""Model directories: ``model.pt`` (TorchScript, the training checkpoint), ``model.onnx`` (the
served network, :mod:`.runtime`) and ``model.yaml``, saved and validated; ``emg-msk export``.

``model.yaml`` (schema ``emg_msk_ros/model/1``) holds everything needed to use the weights on a
new stream and to reproduce them: channel names and order, raw sample rate (Hz), model rate
(Hz), window and horizon (steps), the conditioner settings and calibration, the output
normalisation, joint and muscles, the whole preset document, the physics settings and learned
parameters, the training command, seed, settings and data hash, validation metrics, and the
``weights`` and ``onnx`` files (size, sha256; for ONNX the opset and the graph's input and output
names and shapes).

:func:`export_onnx` is the one export path of every model kind (the contract is in
:mod:`.runtime`): it uses torch's TorchScript-based exporter (``dynamo=False``; the dynamo one
would add onnxscript to the dependencies, for a graph of a few convolutions), opset
:data:`ONNX_OPSET`, and refuses a graph whose outputs differ from torch's.
``emg-msk export MODEL_DIR`` adds ``model.onnx`` to a folder written before serving moved to ONNX
Runtime (or rewrites it), for either model kind (:func:`network_of` rebuilds the network that
model.yaml's ``kind`` and ``architecture`` name).

:func:`read_model_dir` refuses a directory whose files are missing, truncated, corrupt
(checksum), of another schema version, or inconsistent with each other, with a
:class:`ModelError` that names the file and the field (model.yaml alone is read and checked by
:mod:`emg_msk_ros.learning.metadata`, which needs no torch).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from emg_msk_ros import __version__
from emg_msk_ros.learning.metadata import (
    KIND_EMG,
    KIND_STATE_AIDED,
    META_FILE,
    ONNX_FILE,
    SCHEMA,
    STATE_CHANNELS,
    WEIGHTS_FILE,
    ModelError,
    ModelMeta,
    read_checked_file,
    read_model_meta,
    sha256_of,
)
from emg_msk_ros.learning.model import PICNN
from emg_msk_ros.learning.runtime import SECTION, OnnxModel, TensorSpec
from emg_msk_ros.learning.settings import ModelSettings
from emg_msk_ros.learning.state_model import StateAidedPICNN
from emg_msk_ros.physics.preset import Preset
from emg_msk_ros.signal.config import ConfigError

# ONNX opset of exported graphs: all the networks need (Conv, Relu, Softplus, Split; the
# state-aided one also Slice, Concat, Reshape and elementwise arithmetic), run by every ONNX
# Runtime release since 1.14, including the ARM builds small controllers use.
ONNX_OPSET = 17
# ONNX Runtime and torch outputs agree within this fraction of each output's largest magnitude
# (at least 1): float32 rounding differs between their kernels, by about 1e-7 per operation.
EXPORT_TOLERANCE = 1e-5


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and str/float subclasses as plain YAML types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in {META_FILE}")


@contextlib.contextmanager
def torchscript() -> Iterator[None]:
    """Silence torch's deprecation notices for TorchScript, the format chosen for model.pt
    (self-contained, loads without the Python class, 1-thread latency in the
    performance floors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def preset_document(preset: Preset) -> dict[str, Any]:
    """The preset's YAML document, read back from the file it was loaded from."""
    if preset.path is None:
        raise ValueError(f"preset {preset.name!r} was not loaded from a file; cannot embed it")
    return yaml.safe_load(preset.path.read_text(encoding="utf-8"))


class _NamedOutputs(nn.Module):
    """``model`` with one result tensor per named output: ``forward``'s tuple as it is, or its
    single (B, rows, ...) tensor split along axis 1 into each output's rows."""

    def __init__(self, model: nn.Module, rows: list[int]) -> None:
        super().__init__()
        self.model = model
        self.rows = rows

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(*inputs)
        if isinstance(result, torch.Tensor):
            return torch.split(result, self.rows, dim=1)
        return tuple(result)


@dataclass(frozen=True)
class OnnxExport:
    """An exported graph (the bytes of ``model.onnx``) and its inputs and outputs."""

    data: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def section(self) -> dict[str, Any]:
        """model.yaml's ``onnx`` section for this graph."""
        return {"file": ONNX_FILE, "bytes": len(self.data), "sha256": sha256_of(self.data),
                "opset": ONNX_OPSET,
                "exporter": f"torch {torch.__version__} torch.onnx.export (TorchScript-based)",
                "inputs": [spec.to_mapping() for spec in self.inputs],
                "outputs": [spec.to_mapping() for spec in self.outputs]}

    def session(self, where: str, threads: int = 1) -> OnnxModel:
        """The graph in an ONNX Runtime session (:class:`.runtime.OnnxModel`)."""
        return OnnxModel(self.data, self.inputs, self.outputs, where, threads)


def export_onnx(model: nn.Module) -> OnnxExport:
    """The ONNX graph of any model kind (see :mod:`.runtime` for the contract): inputs and
    outputs as ``model.onnx_io()`` names them, a batch axis of any size; :class:`ModelError` if
    ONNX Runtime's outputs differ from torch's on random inputs."""
    model = model.eval()
    inputs, outputs = model.onnx_io()
    example = tuple(torch.zeros(1, *shape) for shape in inputs.values())
    wrapped = _NamedOutputs(model, [shape[0] for shape in outputs.values()])
    names = [*inputs, *outputs]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch deprecates the exporter chosen here, and its parts
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapped, example, buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={name: {0: "batch"} for name in names})
    exported = OnnxExport(buffer.getvalue(),
                          tuple(TensorSpec(name, shape) for name, shape in inputs.items()),
                          tuple(TensorSpec(name, shape) for name, shape in outputs.items()))
    _check_against_torch(wrapped, exported)
    return exported


def _check_against_torch(wrapped: _NamedOutputs, exported: OnnxExport) -> None:
    """Refuse the graph unless ONNX Runtime gives torch's outputs on random inputs in [0, 1)."""
    generator = torch.Generator().manual_seed(0)
    feeds = {spec.name: torch.rand((8, *spec.shape), generator=generator)
             for spec in exported.inputs}
    with torch.no_grad():
        expected = wrapped(*feeds.values())
    served = exported.session(f"exported {ONNX_FILE}").run(
        {name: value.numpy() for name, value in feeds.items()})
    for spec, want in zip(exported.outputs, expected):
        want = want.numpy()
        error = float(np.abs(served[spec.name] - want).max())
        if error > EXPORT_TOLERANCE * max(1.0, float(np.abs(want).max())):
            raise ModelError(f"exported {ONNX_FILE}: output {spec.name!r} differs from torch's "
                             f"by {error:.3g}; not written")


def _write_meta(path: Path, document: Mapping[str, Any]) -> None:
    (path / META_FILE).write_text(yaml.safe_dump(plain(document), sort_keys=False),
                                  encoding="utf-8")


def save_model_dir(path: str | Path, model: nn.Module, meta: Mapping[str, Any],
                   exported: OnnxExport | None = None) -> Path:
    """Write ``model.pt`` (TorchScript of ``model``), ``model.onnx`` (``exported``, default
    :func:`export_onnx` of ``model``) and ``model.yaml`` (``meta`` + both files' sections).

    ``path`` must not exist or be an empty folder. Returns the folder.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty; choose a new model folder")
    exported = export_onnx(model) if exported is None else exported
    path.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with torchscript():
        torch.jit.save(torch.jit.script(model.eval()), buffer)
    weights = buffer.getvalue()
    (path / WEIGHTS_FILE).write_bytes(weights)
    (path / ONNX_FILE).write_bytes(exported.data)
    document = {"schema": SCHEMA, "created_by": f"emg_msk_ros {__version__}",
                "torch_version": str(torch.__version__),
                "weights": {"file": WEIGHTS_FILE, "format": "torchscript",
                            "bytes": len(weights), "sha256": sha256_of(weights)},
                SECTION: exported.section()}
    document.update({key: value for key, value in meta.items() if key not in document})
    _write_meta(path, document)
    return path


@dataclass(frozen=True)
class ModelDir(ModelMeta):
    """A validated model directory with its weights."""

    module: torch.jit.ScriptModule  # weights, eval mode (not frozen)


def _load_weights(path: Path, meta: dict) -> torch.jit.ScriptModule:
    data = read_checked_file(path, meta, "weights")
    try:
        with torchscript():
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure means an unusable file
        raise ModelError(f"{path / WEIGHTS_FILE}: not a loadable TorchScript module "
                         f"({exc})") from exc
    return module.eval()


def read_model_dir(path: str | Path) -> ModelDir:
    """Load and validate a model folder: :func:`read_model_meta`, then the weights, checked
    against model.yaml; raises :class:`ModelError` naming file and field."""
    found = read_model_meta(path)
    path, meta = found.path, found.meta
    module = _load_weights(path, meta)
    n_channels, n_muscles = len(meta["channel_names"]), len(meta["muscles"])
    window, horizon = meta["window"], meta["horizon"]
    inputs = [torch.zeros(1, n_channels, window)]
    expected = [(1, 1 + n_muscles, horizon)]
    if meta.get("kind", KIND_EMG) == KIND_STATE_AIDED:
        offsets = meta["ahead"]["steps"] + 1
        inputs.append(torch.zeros(1, STATE_CHANNELS, window))
        expected = [(1, offsets, horizon), (1, n_muscles, offsets, horizon)]
    shapes = " and ".join(str(tuple(x.shape)) for x in inputs)
    try:
        with torch.inference_mode():
            out = module(*inputs)
    except Exception as exc:  # noqa: BLE001 - the module does not accept the declared input
        raise ModelError(f"{path / WEIGHTS_FILE}: fails on {shapes} input declared by "
                         f"model.yaml ({exc})") from exc
    got = [tuple(o.shape) for o in (out if isinstance(out, tuple) else [out])]
    if got != expected:
        raise ModelError(f"{path / WEIGHTS_FILE}: outputs shape(s) {got}, model.yaml "
                         f"declares {expected}")
    return ModelDir(**vars(found), module=module)


def _architecture(meta: Mapping[str, Any]) -> nn.Module:
    """An untrained network of the model kind and architecture model.yaml describes; its
    ``architecture.type`` must name that kind's class."""
    arch = meta["architecture"]
    settings = ModelSettings(hidden=arch["hidden"], kernel=arch["kernel"],
                             levels=arch["levels"], horizon=meta["horizon"])
    n_channels, n_muscles = len(meta["channel_names"]), len(meta["muscles"])
    if meta.get("kind", KIND_EMG) == KIND_STATE_AIDED:
        model = StateAidedPICNN(n_channels, n_muscles, settings, meta["ahead"]["steps"],
                                1.0 / meta["model_rate"])
    else:
        model = PICNN(n_channels, n_muscles, settings)
    name = f"{type(model).__module__}.{type(model).__name__}"
    if name not in str(arch.get("type", "")):
        raise KeyError(f"architecture.type {arch.get('type')!r} does not name {name}, the "
                       f"network of kind {meta.get('kind', KIND_EMG)!r}")
    return model


def network_of(found: ModelDir) -> nn.Module:
    """The eager network of a model folder: the kind and architecture in model.yaml with the
    weights of model.pt (loaded strictly: weights of another layout are refused)."""
    try:
        model = _architecture(found.meta)
        model.load_state_dict(found.module.state_dict())
    except (ConfigError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{found.path / WEIGHTS_FILE}: does not match the architecture in "
                         f"{META_FILE} ({exc})") from exc
    return model.eval()


def add_onnx(path: str | Path) -> OnnxExport:
    """Export a model folder's network to ``model.onnx`` and record it in model.yaml (replacing
    an ``onnx`` section it had, keeping every other field)."""
    found = read_model_dir(path)
    exported = export_onnx(network_of(found))
    document = {}
    for key, value in found.meta.items():
        if key != SECTION:
            document[key] = value
        if key == "weights":
            document[SECTION] = exported.section()
    (found.path / ONNX_FILE).write_bytes(exported.data)
    _write_meta(found.path, document)
    return exported


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``emg-msk export``."""
    parser.add_argument("model", help="model folder written by emg-msk train (model.pt and "
                        "model.yaml)")


def run(args: argparse.Namespace) -> int:
    """Write MODEL/model.onnx and its model.yaml section; errors name the file and field."""
    try:
        exported = add_onnx(args.model)
    except ModelError as exc:
        print(f"emg-msk export: {exc}", file=sys.stderr)
        return 2
    shapes = "; ".join(f"{kind} " + ", ".join(f"{s.name} {s.shape}" for s in specs)
                       for kind, specs in (("in", exported.inputs), ("out", exported.outputs)))
    print(f"wrote {Path(args.model) / ONNX_FILE} (opset {ONNX_OPSET}; {shapes}) and its "
          f"'{SECTION}' section in {META_FILE}")
    return 0
