"""QuantLinear and MarlinLinear: torch.nn.Modules over the qharness ops, with the buffers the tools register.

QuantLinear holds a GPTQ layer as AutoGPTQ and GPTQModel do (FORMATS.md 1.1): buffers qweight, qzeros, scales,
g_idx, and `bias` only when the original Linear had one. A layer built without a bias has no bias in its
state_dict, so loading a checkpoint that carries one fails as unexpected instead of dropping it, and one built with
a bias reports a checkpoint without it as missing (AutoGPTQ #601/#610). MarlinLinear holds B, s, perm (act-order
layers only) and bias in the layout of docs/marlin.md, padded to whole tiles.
"""
import math

import torch

from . import ops
from .errors import ShapeError

_raw = torch.ops.qharness


def _round_up(x, to):
    return (x + to - 1) // to * to


def _refused(file, what):
    """ShapeError for a checkpoint's tensors, prefixed by the file they came from when known."""
    return ShapeError(f"{file}: {what}" if file else what)


def _check(name, tensor, shape, dtypes, file):
    if tuple(tensor.shape) != tuple(shape):
        raise _refused(file, f"tensor '{name}': expected shape {list(shape)}, found {list(tensor.shape)}")
    if tensor.dtype not in dtypes:
        raise _refused(file, f"tensor '{name}': expected dtype {' or '.join(map(str, dtypes))}, found {tensor.dtype}")


def _flat(x, k):
    if x.shape[-1] != k:
        raise ShapeError(f"the input's last dimension is in_features: expected [..., {k}], found {list(x.shape)}")
    return x.reshape(-1, k)


class QuantLinear(torch.nn.Module):
    """y = x W + bias with W stored as GPTQ's packed buffers; forward dequantizes (qharness.ops.dequantize, the CUDA
    kernel on a GPU) and multiplies in the scales' dtype."""

    def __init__(self, in_features, out_features, *, bits=4, group_size=128, desc_act=False, format="gptq",
                 bias=False, dtype=torch.float16, device=None, name=""):
        super().__init__()
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.group_size, self.desc_act, self.format, self.name = group_size, desc_act, format, name
        g = in_features if group_size == -1 else group_size
        groups = math.ceil(in_features / g)
        ints = dict(dtype=torch.int32, device=device)
        self.register_buffer("qweight", torch.zeros(in_features * bits // 32, out_features, **ints))
        self.register_buffer("qzeros", torch.zeros(groups, out_features * bits // 32, **ints))
        self.register_buffer("scales", torch.zeros(groups, out_features, dtype=dtype, device=device))
        self.register_buffer("g_idx", (torch.arange(in_features, device=device) // g).to(torch.int32))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    def load_tensors(self, tensors, prefix, file=""):
        """Copies `prefix`qweight/qzeros/scales/g_idx(/bias) from `tensors` after checking shapes and dtypes; the
        bias must be present exactly when the layer has one."""
        for name in ("qweight", "qzeros", "scales", "g_idx"):
            key = prefix + name
            if key not in tensors:
                raise _refused(file, f"tensor '{key}' is missing")
            dtypes = (torch.float16, torch.bfloat16, torch.float32) if name == "scales" else (torch.int32,)
            _check(key, tensors[key], getattr(self, name).shape, dtypes, file)
        has_bias = prefix + "bias" in tensors
        if has_bias != (self.bias is not None):
            state = "carries" if has_bias else "lacks"
            raise _refused(file, f"layer '{prefix[:-1]}' {state} a bias the module was built "
                                 f"{'without' if has_bias else 'with'}")
        with torch.no_grad():
            for name in ("qweight", "qzeros", "g_idx"):
                getattr(self, name).copy_(tensors[prefix + name])
            # The checkpoint's dtypes are kept; fresh copies, not views into the file's buffer.
            self.scales = tensors[prefix + "scales"].to(self.qweight.device, copy=True)
            if self.bias is not None:
                self.bias = tensors[prefix + "bias"].to(self.qweight.device, copy=True)
        return self

    def dequantize(self):
        """W (K, N) in the scales' dtype."""
        if torch.compiler.is_compiling():  # the op itself: error translation is Python-side control flow
            return _raw.dequantize(self.qweight, self.qzeros, self.scales, self.g_idx, self.bits, self.group_size,
                                   self.desc_act, self.format, self.name)
        return ops.dequantize(self.qweight, self.qzeros, self.scales, self.g_idx, bits=self.bits,
                              group_size=self.group_size, desc_act=self.desc_act, format=self.format,
                              layer=self.name)

    def forward(self, x):
        w = self.dequantize()
        y = _flat(x, self.in_features).to(w.dtype) @ w
        if self.bias is not None:
            y = y + self.bias.to(w.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


class MarlinLinear(torch.nn.Module):
    """y = x W + bias with W in the Marlin layout (4-bit symmetric); forward is qharness.ops.marlin_gemm (the Marlin
    kernel on a GPU, its reference on the CPU), also under torch.compile."""

    def __init__(self, in_features, out_features, *, group_size=-1, act_order=False, bias=False,
                 dtype=torch.float16, device=None, name=""):
        super().__init__()
        if group_size != -1 and group_size >= in_features:
            group_size = -1  # one scale row is per-channel (docs/marlin.md)
        self.in_features, self.out_features, self.group_size, self.name = in_features, out_features, group_size, name
        k_pad = _round_up(in_features, 16 if group_size == -1 else group_size)
        n_pad = _round_up(out_features, 64)
        groups = 1 if group_size == -1 else math.ceil(in_features / group_size)
        ints = dict(dtype=torch.int32, device=device)
        self.register_buffer("B", torch.zeros(k_pad // 16, 2 * n_pad, **ints))
        self.register_buffer("s", torch.zeros(groups, n_pad, dtype=dtype, device=device))
        self.register_buffer("perm", torch.arange(in_features, **ints) if act_order else None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    def load_tensors(self, tensors, prefix, file=""):
        """Copies `prefix`B/s(/perm/bias) from `tensors` after checking shapes and dtypes."""
        expected = {"B": (self.B.shape, (torch.int32,)), "s": (self.s.shape, (torch.float16, torch.bfloat16))}
        if self.perm is not None:
            expected["perm"] = (self.perm.shape, (torch.int32,))
        if self.bias is not None:
            expected["bias"] = (self.bias.shape, (torch.float16, torch.bfloat16, torch.float32))
        for name, (shape, dtypes) in expected.items():
            if prefix + name not in tensors:
                raise _refused(file, f"tensor '{prefix + name}' is missing")
            _check(prefix + name, tensors[prefix + name], shape, dtypes, file)
        for name in ("perm", "bias"):
            if name not in expected and prefix + name in tensors:
                raise _refused(file, f"layer '{prefix[:-1]}' carries '{name}', which the module was built without")
        with torch.no_grad():
            for name in expected:  # a fresh copy: safetensors views need not be 16-byte aligned, the kernel's reads are
                setattr(self, name, tensors[prefix + name].to(self.B.device, copy=True).contiguous())
        return self

    def forward(self, x):
        bias = None if self.bias is None else self.bias.to(self.s.dtype)
        a = x.to(self.s.dtype).contiguous()
        # Compiled: the op itself (error translation is Python-side control flow) and no finite check (a device
        # sync per call).
        if torch.compiler.is_compiling():
            return _raw.marlin_gemm(a, self.B, self.s, self.perm, bias, self.in_features, self.out_features,
                                    self.group_size, False, self.name)
        return ops.marlin_gemm(a, self.B, self.s, self.perm, bias, size_k=self.in_features,
                               size_n=self.out_features, group_size=self.group_size, layer=self.name)
