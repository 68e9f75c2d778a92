"""Array namespace selection: the physics equations are written once for every backend.

A function receives arrays, asks :func:`namespace` for the module that operates on them, and
uses only operations every backend spells the same way (``exp``, ``expm1``, ``sqrt``,
``sin``, ``cos``, ``where``, ``minimum``) plus :func:`clip` and :func:`like`. Backends:

- numpy arrays (vectorised over muscles and time);
- torch tensors (differentiable; torch is imported only when a tensor is passed in);
- plain Python floats, through :data:`SCALAR` (``math``): one muscle at one instant. The
  forward simulation steps one muscle at a time this way, because with four or five muscles
  numpy's per-call overhead costs more than the arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_NUMPY_TYPES = (np.ndarray, np.floating, np.integer)


class _Scalar:
    """The namespace of Python floats (``math`` plus ``where``, ``minimum``, ``maximum``)."""

    exp = staticmethod(math.exp)
    expm1 = staticmethod(math.expm1)
    sqrt = staticmethod(math.sqrt)
    sin = staticmethod(math.sin)
    cos = staticmethod(math.cos)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def where(condition, if_true, if_false):
        return if_true if condition else if_false


SCALAR = _Scalar()


def is_scalar(x: Any) -> bool:
    """True for a plain number: Python float or int (not bool), or a numpy float64 scalar."""
    kind = type(x)
    return kind is float or kind is int or kind is np.float64


def is_tensor(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch)."""
    return (type(x) is not np.ndarray and not is_scalar(x) and not isinstance(x, _NUMPY_TYPES)
            and type(x).__module__.startswith("torch"))


def namespace(*arrays: Any):
    """``torch`` if any argument is a tensor, :data:`SCALAR` if all are Python numbers, else
    ``numpy``."""
    scalar = True
    for x in arrays:
        kind = type(x)
        if kind is float or kind is int or kind is np.float64:
            continue
        scalar = False
        if kind is not np.ndarray and is_tensor(x):
            import torch

            return torch
    return SCALAR if scalar else np


def like(value: Any, reference: Any) -> Any:
    """``value`` as an array of ``reference``'s kind: a torch tensor of its dtype and device,
    a float64 numpy array, or a Python float when both are Python numbers."""
    if type(value) is np.ndarray and type(reference) is np.ndarray and value.dtype == np.float64:
        return value
    if is_scalar(reference) and is_scalar(value):
        return float(value)
    if is_tensor(reference):
        import torch

        if is_tensor(value):
            return value.to(dtype=reference.dtype, device=reference.device)
        return torch.as_tensor(np.asarray(value), dtype=reference.dtype, device=reference.device)
    if is_tensor(value):
        raise TypeError("got a torch tensor where numpy arrays are used; pass tensors throughout")
    return np.asarray(value, dtype=np.float64)


def clip(x: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002 (numpy's names)
    """``x`` limited to [min, max] (either may be None), for any backend, broadcasting."""
    kind = type(x)
    if kind is float or kind is int or kind is np.float64:
        if min is not None:
            x = x if x > min else min
        return x if max is None or x < max else max
    if kind is np.ndarray:
        if min is not None:
            x = np.maximum(x, min)
        return x if max is None else np.minimum(x, max)
    if is_tensor(x):
        import torch

        return torch.clamp(x, min=min, max=max)
    return clip(np.asarray(x, dtype=np.float64), min, max)
