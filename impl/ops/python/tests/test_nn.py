"""QuantLinear and MarlinLinear on the ops: forward against the tools' own outputs (fixtures/interop), checkpoints
written by GPTQModel's layout and by `qharness quantize` / `qharness convert`, bad checkpoints refused by name, and
MarlinLinear under torch.compile."""
import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import save_file

import qharness
from qharness import _library, ops
from test_ops import GPU, INTEROP, ROOT, fixture, hessian

GPTQMODEL = os.path.join(ROOT, "fixtures", "interop", "gptqmodel", "b4_g128_act_sym_bias.safetensors")


def forward_bound(x, w, y):
    """Two fp16 roundings of the output (ours and the tool's, u = 2^-11 each, and the tool's bias add) and float32
    accumulation in possibly different orders (K 2^-23 sum |x||w|)."""
    return 2.0**-9 * y.abs() + x.shape[-1] * 2.0**-23 * (x.abs() @ w.abs()) + 2.0**-24


def layer_of(meta, tensors):
    fmt = "gptq" if meta["zero_format"] == "v1" else "gptq_v2"
    q = qharness.QuantLinear(int(meta["in_features"]), int(meta["out_features"]), bits=int(meta["bits"]),
                             group_size=int(meta["group_size"]), desc_act=meta["desc_act"] == "true", format=fmt,
                             bias=meta["bias"] == "true", name="layer")
    return q.load_tensors(tensors, "layer.")


@pytest.mark.parametrize("path", INTEROP, ids=lambda p: "/".join(p.split(os.sep)[-2:]))
def test_quant_linear_forward_matches_the_tools_forward(path):
    meta, t = fixture(path)
    layer = layer_of(meta, t)
    x = t["expected.x"]
    if meta["zero_format"] == "v1" and json.loads(meta["diagnostics"])["zero_points_equal_0"]:
        # The tool stored a zero point of 0 as -1 (all ones): the word is corrupt, and we refuse to read it.
        with pytest.raises(qharness.FormatError, match=r"tensor 'layer\.qzeros'.*v1 cannot hold"):
            layer(x)
        return
    y = layer(x.reshape(2, 2, -1)).reshape(x.shape[0], -1)  # leading dimensions are kept
    w = t["expected.weight"].t().double()
    assert y.dtype == torch.float16
    assert ((y.double() - t["expected.y"].double()).abs() <= forward_bound(x.double(), w, t["expected.y"].double())).all()


@pytest.mark.parametrize("device", [GPU])
def test_quant_linear_on_cuda_matches_the_cpu(device):
    meta, t = fixture(GPTQMODEL)
    cpu = layer_of(meta, t)
    gpu = layer_of(meta, t).to(device)
    assert torch.equal(gpu.dequantize().cpu(), cpu.dequantize())


def test_a_bias_the_module_lacks_is_refused_not_dropped():
    """AutoGPTQ #601/#610: a QuantLinear built without a bias and a checkpoint that carries one."""
    meta, t = fixture(GPTQMODEL)
    q = qharness.QuantLinear(256, 96, bits=4, group_size=128, desc_act=True, format="gptq_v2", bias=False)
    with pytest.raises(qharness.ShapeError, match="carries a bias"):
        q.load_tensors(t, "layer.", "model.safetensors")
    with pytest.raises(qharness.ShapeError, match=r"tensor 'layer\.qweight': expected shape \[16, 96\]"):
        qharness.QuantLinear(128, 96, group_size=128, desc_act=True, bias=True).load_tensors(t, "layer.")


def gptqmodel_checkpoint(directory, fmt):
    """A checkpoint directory in GPTQModel's layout (quantize_config.json with `meta`, model.safetensors) holding the
    GPTQModel 2.2.0 fixture layer as model.layers.0.mlp.up_proj; v1 zero points are what its save wrote."""
    meta, t = fixture(GPTQMODEL)
    prefix = "model.layers.0.mlp.up_proj."
    qzeros = t["saved_v1.qzeros"] if fmt == "gptq" else t["layer.qzeros"]
    tensors = {prefix + "qweight": t["layer.qweight"], prefix + "qzeros": qzeros, prefix + "scales": t["layer.scales"],
               prefix + "g_idx": t["layer.g_idx"], prefix + "bias": t["layer.bias"],
               "model.embed_tokens.weight": torch.zeros(4, 256, dtype=torch.float16)}
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    config = {"bits": 4, "group_size": 128, "desc_act": True, "sym": True, "lm_head": False, "quant_method": "gptq",
              "checkpoint_format": fmt, "pack_dtype": "int32",
              "meta": {"quantizer": ["gptqmodel:2.2.0"], "damp_percent": 0.01, "damp_auto_increment": 0.0025}}
    with open(os.path.join(directory, "quantize_config.json"), "w") as f:
        json.dump(config, f)
    return t


@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_loads_a_gptqmodel_checkpoint(tmp_path, fmt):
    t = gptqmodel_checkpoint(str(tmp_path), fmt)
    layers = qharness.load_checkpoint(str(tmp_path))
    assert list(layers) == ["model.layers.0.mlp.up_proj"]
    layer = layers["model.layers.0.mlp.up_proj"]
    assert isinstance(layer, qharness.QuantLinear) and layer.bias is not None
    assert torch.equal(layer.dequantize().t().float(), t["expected.weight"].float())


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    gptqmodel_checkpoint(str(tmp_path / "ok"), "gptq")
    with pytest.raises(qharness.ConfigError, match="no quantize_config.json"):
        qharness.load_checkpoint(str(tmp_path))
    path = tmp_path / "ok" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(qharness.IoError, match=r"model\.safetensors: not a readable safetensors file"):
        qharness.load_checkpoint(str(tmp_path / "ok"))
    (tmp_path / "ok" / "quantize_config.json").write_text('{"bits": "four"}')
    with pytest.raises(qharness.ConfigError, match="'bits' must be an integer"):
        qharness.load_checkpoint(str(tmp_path / "ok"))


def test_more_bad_checkpoints_and_tensors_are_refused_by_name(tmp_path):
    gptqmodel_checkpoint(str(tmp_path), "gptq")
    cfg = tmp_path / "quantize_config.json"
    for text, message in [("{bits", "not readable JSON"), ("[4]", "must be a JSON object"),
                          ('{"bits": 4, "checkpoint_format": "awq"}', "checkpoint_format 'awq' is not one"),
                          ('{"bits": 0}', "'bits' must be 2, 3, 4 or 8, found 0")]:
        cfg.write_text(text)
        with pytest.raises(qharness.ConfigError, match=message):
            qharness.load_checkpoint(str(tmp_path))
    cfg.write_text('{"bits": 4, "group_size": 128, "checkpoint_format": "marlin"}')
    with pytest.raises(qharness.ConfigError, match=r"checkpoint_format 'marlin' but no '\*\.B' tensor"):
        qharness.load_checkpoint(str(tmp_path))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(qharness.IoError, match=r"no \*\.safetensors file"):
        qharness.load_checkpoint(str(tmp_path))
    from test_ops import marlin_layer
    B, s, perm, _, _ = marlin_layer(256, 128, 128, True, False, torch.float16, seed=1)
    with pytest.raises(qharness.ShapeError, match=r"tensor 'l\.s' is missing"):
        qharness.MarlinLinear(256, 128, group_size=128, act_order=True).load_tensors({"l.B": B, "l.perm": perm}, "l.", "f")
    with pytest.raises(qharness.ShapeError, match="carries 'perm', which the module was built without"):
        qharness.MarlinLinear(256, 128, group_size=128).load_tensors({"l.B": B, "l.s": s, "l.perm": perm}, "l.", "f")
    with pytest.raises(qharness.ShapeError, match=r"tensor 'l\.qzeros' is missing"):
        qharness.QuantLinear(256, 96).load_tensors({"l.qweight": torch.zeros(32, 96, dtype=torch.int32)}, "l.")


def qharness_binary():
    path = os.path.join(os.path.dirname(_library.loaded_path), "..", "bin", "qharness")
    if not os.path.exists(path):
        pytest.fail(f"no qharness binary beside the library ({path}): build the project")
    return path


def test_our_checkpoints_quantize_and_marlin_load(tmp_path):
    """`qharness quantize` writes a GPTQ checkpoint the package loads into QuantLinears holding what the GPTQ op
    computes; `qharness convert --to marlin` turns it into MarlinLinears whose forward (the GEMM's CPU reference)
    equals the QuantLinear's up to the GEMM's float32 accumulation."""
    k, n = 256, 192
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(3)).half()
    h = hessian(k, 512, seed=4).float()
    save_file({"proj.weight": w, "proj.bias": torch.randn(n).half()}, str(tmp_path / "w.safetensors"))
    save_file({"proj.hessian": h}, str(tmp_path / "calib.safetensors"))
    run = lambda *a: subprocess.run([qharness_binary(), *a], capture_output=True, text=True)  # noqa: E731
    r = run("quantize", "--weights", str(tmp_path / "w.safetensors"), "--calib", str(tmp_path / "calib.safetensors"),
            "--out", str(tmp_path / "gptq"))
    assert r.returncode == 0, r.stderr
    layers = qharness.load_checkpoint(str(tmp_path / "gptq"))
    gptq = layers["proj"]
    expected = ops.gptq_quantize(w.float(), h, bits=4, group_size=128)
    packed = ops.pack(expected.codes, expected.zeros, expected.scales, expected.g_idx)
    assert torch.equal(gptq.qweight, packed.qweight) and torch.equal(gptq.scales, packed.scales)

    r = run("convert", "--to", "marlin", str(tmp_path / "gptq"), str(tmp_path / "marlin"))
    assert r.returncode == 0, r.stderr
    marlin = qharness.load_checkpoint(str(tmp_path / "marlin"))["proj"]
    assert isinstance(marlin, qharness.MarlinLinear) and (marlin.in_features, marlin.out_features) == (k, n)
    x = torch.randn(5, k).half()
    wq = gptq.dequantize().double()
    y_ref = x.double() @ wq + gptq.bias.double()
    bound = (k + 72) * 2.0**-23 * (x.double().abs() @ wq.abs()) + 2.0**-11 * y_ref.abs() + 1e-30
    assert ((marlin(x).double() - y_ref).abs() <= bound).all()


def marlin_module(device):
    from test_ops import marlin_layer
    B, s, perm, b, _ = marlin_layer(256, 128, 128, False, True, torch.float16, seed=8)
    m = qharness.MarlinLinear(256, 128, group_size=128, bias=True, device=device)
    return m.load_tensors({"l.B": B, "l.s": s, "l.bias": b}, "l.")


@pytest.mark.parametrize("device, backend", [("cpu", "aot_eager"), pytest.param("cuda", "inductor",
                                                                               marks=GPU.marks)])
def test_marlin_linear_under_torch_compile(device, backend):
    """The op traces with fake tensors (its Meta kernel) in one graph, with a symbolic batch size, and the compiled
    module gives the eager result."""
    m = marlin_module(device)
    compiled = torch.compile(m, backend=backend, fullgraph=True, dynamic=True)
    for rows in (3, 9):
        x = torch.randn(rows, 256, device=device).half()
        assert torch.equal(compiled(x), m(x))


def test_quant_linear_under_torch_compile():
    """QuantLinear's dequantize + matmul in one graph on the CPU (aot_eager), equal to eager."""
    meta, t = fixture(GPTQMODEL)
    layer = layer_of(meta, t)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(t["expected.x"]), layer(t["expected.x"]))
