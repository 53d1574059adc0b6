"""Faster float32 linear layers on a CPU, entered only around the engine's own forward passes.

torch sends float32 matmuls on a CPU to MKL, which on AMD CPUs runs its AVX2
code (measured on the project's 2-core EPYC: about 80 GFLOP/s a core); oneDNN's
float32 kernels use AVX-512 and run the engine's shapes (tens of tokens at a
time) about twice as fast. Still float32: results differ from MKL's by summation
order only (about 1e-6 relative). Training and anything else sharing the model
keep torch's default, as the mode is entered only by the engine.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode


class OneDnnLinear(TorchFunctionMode):
    """``torch.nn.functional.linear`` on float32 CPU tensors through oneDNN; everything else unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, weight, bias = _linear_arguments(*args, **kwargs)
            if (x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu"
                    and weight.dim() == 2 and weight.is_contiguous()):
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return func(*args, **kwargs)


def _linear_arguments(input, weight, bias=None):
    return input, weight, bias


def linear_kernels(device: torch.device):
    """The context the engine runs its forward passes in on ``device``: oneDNN on a CPU that has it."""
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return OneDnnLinear
    return contextlib.nullcontext
