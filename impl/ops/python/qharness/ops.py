"""Typed wrappers over torch.ops.qharness (schemas: impl/ops/registration.cpp, docs/ops.md).

Each wrapper calls the op and turns its errors into qharness.errors classes, message intact. The ops themselves
(torch.ops.qharness.<name>) work the same under torch.compile and on meta tensors; call them directly inside
compiled code.
"""
from typing import NamedTuple, Optional

import torch

from . import _library
from .errors import typed_errors

_library.load()
_ops = torch.ops.qharness

SUMMARY_FIELDS = ("damp_initial", "damp_final", "attempts", "float64_retry", "dead_columns", "min_pivot", "loss")


class GptqResult(NamedTuple):
    codes: torch.Tensor  # (N, K) int32 in [0, 2^bits - 1]
    scales: torch.Tensor  # (N, groups) float32 (float64 with float64=True)
    zeros: torch.Tensor  # (N, groups), integer-valued
    g_idx: torch.Tensor  # (K,) int32
    summary: dict  # SUMMARY_FIELDS -> float (attempts, dead_columns are counts; float64_retry 0 or 1)


class Packed(NamedTuple):
    qweight: torch.Tensor  # (K * bits / 32, N) int32
    qzeros: torch.Tensor  # (groups, N * bits / 32) int32
    scales: torch.Tensor  # (groups, N)


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, *, bits: int = 4, group_size: int = 128,
                  sym: bool = True, desc_act: bool = False, static_groups: bool = False, damp_percent: float = 0.01,
                  damp_auto_increment: float = 0.0025, float64: bool = False, layer: str = "") -> GptqResult:
    """GPTQ of `weight` (out_features, in_features) with `hessian` (in, in) of its inputs (H = 2/n sum x x^T).

    CPU tensors run the reference (float32, or float64 with float64=True), CUDA tensors the optimized path
    (float32). A Hessian that is not positive definite is damped up by damp_auto_increment until it factorizes
    (0 disables that); NaN/Inf or an unrecoverable H raise NumericError naming `layer`.
    """
    with typed_errors():
        codes, scales, zeros, g_idx, summary = _ops.gptq_quantize(
            weight, hessian, bits, group_size, sym, desc_act, static_groups, damp_percent, damp_auto_increment,
            float64, layer)
    return GptqResult(codes, scales, zeros, g_idx, dict(zip(SUMMARY_FIELDS, summary.tolist())))


def pack(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor, *, bits: int = 4,
         group_size: int = 128, sym: bool = True, format: str = "gptq", scale_dtype: torch.dtype = torch.float16,
         layer: str = "") -> Packed:
    """GPTQ QuantLinear buffers from codes (N, K), integer zero points (N, groups), scales (N, groups), g_idx (K,).

    format "gptq" (v1, AutoGPTQ and GPTQModel's default on disk) stores each zero point minus one, so a zero point
    of 0 cannot be stored and raises ConfigError (use "gptq_v2"); codes or zero points off [0, 2^bits - 1] raise
    NumericError. Bit layout: FORMATS.md 1.2-1.3, the same words AutoGPTQ and GPTQModel write.
    """
    with typed_errors():
        return Packed(*_ops.pack(codes, zeros, scales, g_idx, bits, group_size, sym, format, scale_dtype, layer))


def unpack(qweight: torch.Tensor, qzeros: torch.Tensor, *, bits: int = 4, group_size: int = 128,
           format: str = "gptq", layer: str = ""):
    """(codes (K, N), zero points (groups, N)) int32 from the packed words; v1 zero points come back plus one."""
    with typed_errors():
        return _ops.unpack(qweight, qzeros, bits, group_size, format, layer)


def dequantize(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor, *,
               bits: int = 4, group_size: int = 128, desc_act: bool = False, format: str = "gptq",
               layer: str = "") -> torch.Tensor:
    """W (K, N) = scales[g] (q - z[g]) with g = g_idx[k], in float32 then rounded once to scales' dtype.

    The buffers are checked first (dtypes, shapes, g_idx range, finite scales, and g_idx == k // group_size
    unless desc_act) and refused with the tensor named. CUDA tensors use the dequantize kernel.
    """
    with typed_errors():
        return _ops.dequantize(qweight, qzeros, scales, g_idx, bits, group_size, desc_act, format, layer)


def marlin_repack(qweight: torch.Tensor, perm: Optional[torch.Tensor] = None, *, size_k: int, size_n: int,
                  layer: str = "") -> torch.Tensor:
    """4-bit qweight (K/8, N) -> Marlin B (K/16, 2N) int32 (AutoGPTQ's Marlin layout); `perm` (K,) int32 puts
    input row perm[i] at row i first (act-order: argsort of g_idx). Needs K % 16 == 0 and N % 64 == 0."""
    with typed_errors():
        return _ops.marlin_repack(qweight, perm, size_k, size_n, layer)


def marlin_gemm(x: torch.Tensor, B: torch.Tensor, s: torch.Tensor, perm: Optional[torch.Tensor] = None,
                bias: Optional[torch.Tensor] = None, *, size_k: int, size_n: int, group_size: int = -1,
                check_finite: bool = True, layer: str = "") -> torch.Tensor:
    """y (..., N) = x (..., K) W + bias, W in the Marlin layout (B, s padded to whole tiles: docs/marlin.md).

    CUDA: the Marlin kernel (fp16/bf16 x int4, float32 accumulation); CPU: its reference. check_finite raises
    NumericError for NaN/Inf in x or an output that overflows (costs a device sync).
    """
    with typed_errors():
        return _ops.marlin_gemm(x, B, s, perm, bias, size_k, size_n, group_size, check_finite, layer)
