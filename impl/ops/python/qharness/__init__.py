"""qharness in PyTorch: the TORCH_LIBRARY(qharness) operators of libqh_ops.so (GPTQ, GPTQ pack/unpack,
dequantize, Marlin repack and GEMM; CPU, CUDA and Meta kernels), typed wrappers (qharness.ops), QuantLinear and
MarlinLinear modules (qharness.nn) and a checkpoint loader (qharness.checkpoint). Importing it loads the library
from the clone's build/<preset>/lib, or from $QHARNESS_LIBRARY. Errors: qharness.errors. Docs: docs/ops.md.
"""
from . import errors
from .checkpoint import load_checkpoint, read_quantize_config
from .errors import ConfigError, FormatError, IoError, NumericError, QharnessError, ShapeError
from .nn import MarlinLinear, QuantLinear
from .ops import dequantize, gptq_quantize, marlin_gemm, marlin_repack, pack, unpack

__all__ = ["errors", "load_checkpoint", "read_quantize_config", "QuantLinear", "MarlinLinear", "gptq_quantize",
           "pack", "unpack", "dequantize", "marlin_repack", "marlin_gemm", "QharnessError", "ShapeError",
           "ConfigError", "FormatError", "NumericError", "IoError"]
