"""Loading the quantized layers of a checkpoint directory as QuantLinear / MarlinLinear modules.

Reads the quantization config the way the tools look it up (quantize_config.json, then config.json's
quantization_config; FORMATS.md 1.7) and every *.safetensors file of the directory. GPTQ checkpoints
(checkpoint_format "gptq" = v1 zero points, "gptq_v2"; AutoGPTQ's, GPTQModel's, `qharness quantize`'s) give a
QuantLinear per `<layer>.qweight`; Marlin checkpoints (checkpoint_format "marlin", `qharness convert --to marlin`,
AutoGPTQ's Marlin format) a MarlinLinear per `<layer>.B`.
"""
import glob
import json
import os

import torch
from safetensors.torch import load_file

from .errors import ConfigError, IoError
from .nn import MarlinLinear, QuantLinear

__all__ = ["read_quantize_config", "load_checkpoint"]


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise ConfigError(f"{path}: not readable JSON ({e})") from None
    except OSError as e:
        raise IoError(f"{path}: {e.strerror}") from None


def read_quantize_config(directory):
    """The quantization config of a checkpoint directory (legacy spellings normalized: w_bit, q_group_size,
    is_marlin_format, quant_method "marlin", GPTQModel's "format")."""
    for name in ("quantize_config.json", "quant_config.json"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            cfg = _read_json(path)
            break
    else:
        path = os.path.join(directory, "config.json")
        cfg = _read_json(path).get("quantization_config") if os.path.exists(path) else None
        if cfg is None:
            raise ConfigError(f"{directory}: no quantize_config.json, quant_config.json or config.json with "
                              "quantization_config")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: the quantization config must be a JSON object")
    cfg = dict(cfg)
    cfg.setdefault("bits", cfg.get("w_bit", 4))
    cfg.setdefault("group_size", cfg.get("q_group_size", -1))
    fmt = cfg.get("checkpoint_format") or cfg.get("format") or "gptq"
    if cfg.get("is_marlin_format") or cfg.get("quant_method") == "marlin":
        fmt = "marlin"
    if fmt not in ("gptq", "gptq_v2", "marlin"):
        raise ConfigError(f"{path}: checkpoint_format '{fmt}' is not one qharness loads (gptq, gptq_v2, marlin)")
    cfg["checkpoint_format"] = fmt
    for key in ("bits", "group_size"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool):
            raise ConfigError(f"{path}: '{key}' must be an integer, found {cfg[key]!r}")
    if cfg["bits"] not in (2, 3, 4, 8):  # the layers' shapes are derived from it: checked before any division
        raise ConfigError(f"{path}: 'bits' must be 2, 3, 4 or 8, found {cfg['bits']}")
    return cfg


def _tensors(directory):
    """({name: tensor}, {name: file}) over every *.safetensors file of the directory."""
    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not files:
        raise IoError(f"{directory}: no *.safetensors file")
    tensors, file_of = {}, {}
    for f in files:
        try:
            loaded = load_file(f)
        except Exception as e:  # safetensors raises its own SafetensorError for truncated or malformed files
            raise IoError(f"{f}: not a readable safetensors file ({e})") from None
        tensors.update(loaded)
        file_of.update(dict.fromkeys(loaded, f))
    return tensors, file_of


def _marlin_shape(tensors, prefix, rows_b, cols_b):
    """K and N of a Marlin layer: perm's length gives K and the bias's N; otherwise K is the padded extent and N the
    number of nonzero scale columns (padded columns of s hold 0 and real scales are nonzero; the count does not
    depend on the scale permutation, which only moves columns within their block)."""
    k = tensors[prefix + "perm"].numel() if prefix + "perm" in tensors else rows_b * 16
    if prefix + "bias" in tensors:
        return k, tensors[prefix + "bias"].numel()
    n = int((tensors[prefix + "s"] != 0).any(0).sum())
    return k, n if n > 0 else cols_b // 2


def load_checkpoint(directory, *, device="cpu", shapes=None):
    """{layer name: module} for every quantized layer of the checkpoint in `directory`, on `device`.

    `shapes` {layer: (in_features, out_features)} gives the unpadded shapes of Marlin layers whose K or N the
    tensors cannot tell (a padded K without act-order); otherwise they come from perm, bias and the scales.
    """
    cfg = read_quantize_config(directory)
    tensors, file_of = _tensors(directory)
    fmt, bits, group_size = cfg["checkpoint_format"], cfg["bits"], cfg["group_size"]
    desc_act = bool(cfg.get("desc_act", False))
    layers = {}
    suffix = ".B" if fmt == "marlin" else ".qweight"
    for key in sorted(k for k in tensors if k.endswith(suffix)):
        name = key[: -len(suffix)]
        prefix = name + "."
        if fmt == "marlin":
            rows, cols = tensors[key].shape
            k, n = (shapes or {}).get(name) or _marlin_shape(tensors, prefix, rows, cols)
            module = MarlinLinear(k, n, group_size=group_size, act_order=prefix + "perm" in tensors,
                                  bias=prefix + "bias" in tensors, dtype=tensors[prefix + "s"].dtype, device=device,
                                  name=name)
        else:
            qweight = tensors[key]
            scales = tensors.get(prefix + "scales")
            module = QuantLinear(qweight.shape[0] * 32 // bits, qweight.shape[1], bits=bits, group_size=group_size,
                                 desc_act=desc_act, format=fmt, bias=prefix + "bias" in tensors,
                                 dtype=torch.float16 if scales is None else scales.dtype, device=device, name=name)
        layers[name] = module.load_tensors(tensors, prefix, file_of[key])
    if not layers:
        raise ConfigError(f"{directory}: checkpoint_format '{fmt}' but no '*{suffix}' tensor")
    return layers
