"""Every qharness op against a plain-torch reference written from the published formats (references.py), on the
CPU always and on CUDA when a GPU is present; torch.library.opcheck on each op (schema, fake/meta kernels,
autograd registration, AOT dispatch with dynamic shapes); bad input surfaced as typed exceptions, message intact."""
import glob
import json
import math
import os

import pytest
import torch

import qharness
import references as ref
from qharness import ops

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..")
INTEROP = sorted(glob.glob(os.path.join(ROOT, "fixtures", "interop", "*", "*.safetensors")))
GPU = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                    reason="no usable CUDA device: the CUDA kernels are not run"))
DEVICES = ["cpu", GPU]


def fixture(path):
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


def spec(meta):
    return dict(bits=int(meta["bits"]), group_size=int(meta["group_size"]))


def random_layer(k, n, bits, group_size, desc_act, seed, scale_dtype=torch.float16):
    """Codes, zero points (1 .. maxq, so v1 can store them), scales and g_idx of a random GPTQ layer, GPTQ's (N, K)
    orientation."""
    gen = torch.Generator().manual_seed(seed)
    maxq = 2**bits - 1
    g = k if group_size == -1 else group_size
    groups = math.ceil(k / g)
    codes = torch.randint(0, maxq + 1, (n, k), generator=gen, dtype=torch.int32)
    zeros = torch.randint(1, maxq + 1, (n, groups), generator=gen, dtype=torch.int32)
    scales = (torch.rand(n, groups, generator=gen) * 0.02 + 0.001).to(scale_dtype).float()
    g_idx = torch.arange(k, dtype=torch.int32) // g
    if desc_act:
        g_idx = g_idx[torch.randperm(k, generator=gen)]
    return codes, zeros, scales, g_idx


# -- pack / unpack / dequantize ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", INTEROP, ids=lambda p: "/".join(p.split(os.sep)[-2:]))
def test_unpack_pack_and_dequantize_match_the_tools_files(path):
    """The tools' own packed layers (fixtures/interop: AutoGPTQ 0.7.1 and GPTQModel 2.2.0 pack() output): unpack
    equals the plain bit-stream reading, pack gives back the tool's words, dequantize equals the tool's own
    dequantization bit for bit."""
    meta, t = fixture(path)
    s = spec(meta)
    fmt = "gptq" if meta["zero_format"] == "v1" else "gptq_v2"
    k, n = int(meta["in_features"]), int(meta["out_features"])
    if fmt == "gptq" and json.loads(meta["diagnostics"])["zero_points_equal_0"]:
        # The tool stored a zero point of 0 as -1, which corrupts the whole word: reading is refused, by tensor,
        # and so is writing one.
        with pytest.raises(qharness.FormatError, match=r"tensor 'unpack\.qzeros'.*v1 cannot hold"):
            ops.unpack(t["layer.qweight"], t["layer.qzeros"], format=fmt, **s)
        zeros = torch.zeros(int(meta["out_features"]), t["layer.scales"].shape[0], dtype=torch.int32)
        with pytest.raises(qharness.ConfigError, match="gptq_v2"):
            ops.pack(ref.unpack_bits(t["layer.qweight"], k, s["bits"]).t(), zeros, t["layer.scales"].float().t(),
                     t["layer.g_idx"], format=fmt, **s)
        return
    codes, zeros = ops.unpack(t["layer.qweight"], t["layer.qzeros"], format=fmt, **s)
    assert torch.equal(codes, ref.unpack_bits(t["layer.qweight"], k, s["bits"]))
    stored = ref.unpack_bits(t["layer.qzeros"].t().contiguous(), n, s["bits"]).t()
    assert torch.equal(zeros, stored + (1 if fmt == "gptq" else 0))
    packed = ops.pack(codes.t(), zeros.t(), t["layer.scales"].float().t(), t["layer.g_idx"], format=fmt,
                      scale_dtype=t["layer.scales"].dtype, **s)
    assert torch.equal(packed.qweight, t["layer.qweight"]) and torch.equal(packed.qzeros, t["layer.qzeros"])
    w = ops.dequantize(t["layer.qweight"], t["layer.qzeros"], t["layer.scales"], t["layer.g_idx"],
                       desc_act=meta["desc_act"] == "true", format=fmt, **s)
    assert torch.equal(w.t().float(), t["expected.weight"].float())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bits, group_size, desc_act, fmt", [
    (2, 32, False, "gptq"), (3, 64, True, "gptq_v2"), (4, 128, False, "gptq"), (4, -1, True, "gptq_v2"),
    (8, 128, True, "gptq"), (4, 96, False, "gptq_v2")])
def test_pack_unpack_dequantize_random_layers(device, bits, group_size, desc_act, fmt):
    k, n = 384, 128
    codes, zeros, scales, g_idx = random_layer(k, n, bits, group_size, desc_act, seed=bits * 1000 + group_size)
    p = ops.pack(codes.to(device), zeros.to(device), scales.to(device), g_idx.to(device), bits=bits,
                 group_size=group_size, format=fmt)
    assert p.qweight.device.type == device
    stored = zeros - (1 if fmt == "gptq" else 0)  # (N, groups): qzeros packs each group's N values along N
    assert torch.equal(p.qweight.cpu(), ref.pack_bits(codes.t(), bits))
    assert torch.equal(p.qzeros.cpu(), ref.pack_bits(stored, bits).t())
    got_codes, got_zeros = ops.unpack(p.qweight, p.qzeros, bits=bits, group_size=group_size, format=fmt)
    assert torch.equal(got_codes.cpu(), codes.t()) and torch.equal(got_zeros.cpu(), zeros.t())
    w = ops.dequantize(p.qweight, p.qzeros, p.scales, g_idx.to(device), bits=bits, group_size=group_size,
                       desc_act=desc_act, format=fmt)
    assert w.device.type == device and w.dtype == torch.float16
    assert torch.equal(w.cpu(), ref.dequantize(p.qweight.cpu(), p.qzeros.cpu(), p.scales.cpu(), g_idx, bits,
                                               fmt == "gptq"))


# -- Marlin --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act_order", [False, True])
def test_marlin_repack_is_the_reference_layout(device, act_order):
    k, n = 256, 192
    codes = torch.randint(0, 16, (k, n), generator=torch.Generator().manual_seed(5), dtype=torch.int32)
    qweight = ref.pack_bits(codes, 4)
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(6)).to(torch.int32) if act_order else None
    got = ops.marlin_repack(qweight.to(device), None if perm is None else perm.to(device), size_k=k, size_n=n)
    rows = codes[perm.long()] if act_order else codes
    assert torch.equal(got.cpu(), ref.marlin_pack(rows))


def marlin_layer(k, n, group_size, act_order, bias, dtype, seed):
    """A Marlin layer built with the reference layout (padded per docs/marlin.md) and its float64 weight (K, N)."""
    gen = torch.Generator().manual_seed(seed)
    groups = 1 if group_size == -1 else math.ceil(k / group_size)
    k_pad = -(-k // (16 if group_size == -1 else group_size)) * (16 if group_size == -1 else group_size)
    n_pad = -(-n // 64) * 64
    codes = torch.randint(0, 16, (k, n), generator=gen, dtype=torch.int32)
    scales = ((torch.rand(groups, n, generator=gen) * 0.02 + 0.0002) *
              (torch.randint(0, 2, (groups, n), generator=gen) * 2 - 1)).to(dtype)
    g = torch.zeros(k, dtype=torch.long) if group_size == -1 else torch.arange(k) // group_size
    perm = torch.randperm(k, generator=gen) if act_order else torch.arange(k)
    if act_order and group_size != -1:
        g = torch.argsort(perm) // group_size  # groups formed in a random column order (FORMATS.md 1.6)
        perm = torch.argsort(g, stable=True)
    w = (scales.double()[g] * (codes.double() - 8)).to(dtype).double()
    padded = torch.full((k_pad, n_pad), 8, dtype=torch.int32)
    padded[:k, :n] = codes[perm]
    s = torch.zeros(groups, n_pad, dtype=dtype)
    s[:, :n] = scales
    b = torch.randn(n, generator=gen).to(dtype) if bias else None
    return (ref.marlin_pack(padded), ref.marlin_scales(s, groups > 1), perm.to(torch.int32) if act_order else None,
            b, w)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m, k, n, group_size, act_order, bias, dtype", [
    (1, 256, 128, 128, False, False, torch.float16), (16, 512, 192, -1, True, True, torch.bfloat16),
    (33, 320, 171, 64, True, False, torch.float16), (7, 40, 80, -1, False, True, torch.bfloat16)])
def test_marlin_gemm_matches_float64(device, m, k, n, group_size, act_order, bias, dtype):
    """Tolerance as conformance/marlin_gemm_test.cpp derives it: float32 accumulation of exact products, at most
    (K + 72) 2^-23 sum |x||w|, plus one rounding to the output type u |y| (u = 2^-11 fp16, 2^-8 bf16)."""
    B, s, perm, b, w = marlin_layer(k, n, group_size, act_order, bias, dtype, seed=m + k + n)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(dtype)
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    y = ops.marlin_gemm(to(x), to(B), to(s), to(perm), to(b), size_k=k, size_n=n, group_size=group_size)
    assert y.shape == (m, n) and y.dtype == dtype and y.device.type == device
    yref = x.double() @ w + (0 if b is None else b.double())
    u = 2.0**-11 if dtype == torch.float16 else 2.0**-8
    bound = (k + 72) * 2.0**-23 * (x.double().abs() @ w.abs()) + u * yref.abs() + 1e-30
    assert ((y.cpu().double() - yref).abs() <= bound).all()


# -- GPTQ ----------------------------------------------------------------------------------------------------------

def hessian(k, tokens, seed, dead=()):
    x = torch.randn(tokens, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[:, list(dead)] = 0
    return 2 / tokens * x.t() @ x


@pytest.mark.parametrize("bits, group_size, sym, desc_act", [(4, 128, True, False), (3, 32, False, True),
                                                             (8, -1, True, True), (2, 64, False, False)])
def test_gptq_float64_matches_the_published_algorithm(bits, group_size, sym, desc_act):
    """ops.gptq_quantize (the CPU reference in float64) against fasterquant written here in float64: the same
    codes, scales and zero points to rounding, the same loss."""
    n, k = 48, 256
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    h = hessian(k, 2 * k, seed=bits + 1, dead=(3,))
    r = ops.gptq_quantize(w, h, bits=bits, group_size=group_size, sym=sym, desc_act=desc_act, float64=True)
    codes, scales, zeros, g_idx, loss = ref.gptq(w, h, bits, group_size, sym, desc_act)
    assert torch.equal(r.codes, codes) and torch.equal(r.g_idx, g_idx)
    # Our H is factorized divided by its mean diagonal (Q does not depend on H's scale): 1e-9 covers that rounding.
    torch.testing.assert_close(r.scales, scales, rtol=1e-9, atol=0)
    torch.testing.assert_close(r.zeros, zeros, rtol=0, atol=0)
    assert r.summary["loss"] == pytest.approx(loss, rel=1e-9)
    assert r.summary["dead_columns"] == 1 and r.summary["attempts"] == 1


def test_gptq_recovers_a_non_positive_definite_hessian_by_damping():
    """The "leading minor of order 1" failure (AutoGPTQ #708): an H with a negative eigenvalue is damped up until
    it factorizes, and the summary says how far."""
    k = 128
    h = hessian(k, 16, seed=3) - 0.02 * torch.eye(k, dtype=torch.float64)  # rank 16 minus a little: not PD
    r = ops.gptq_quantize(torch.randn(32, k, dtype=torch.float64), h, group_size=-1)
    assert r.summary["attempts"] > 1 and r.summary["damp_final"] > r.summary["damp_initial"]
    assert torch.isfinite(r.scales).all() and r.codes.min() >= 0 and r.codes.max() <= 15


@pytest.mark.parametrize("device", [GPU])
def test_gptq_on_cuda_matches_the_reference(device):
    n, k = 64, 256
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(1))
    h = hessian(k, 512, seed=2).float()
    ours = ops.gptq_quantize(w.to(device), h.to(device))
    reference = ops.gptq_quantize(w, h)
    assert ours.codes.device.type == "cuda"
    # float32 on both paths with different summation orders: a code may differ where w / s sits on a rounding
    # boundary; the optimized-path suite (gptq_optimized_test) bounds the same mismatch rate.
    assert (ours.codes.cpu() != reference.codes).float().mean() < 0.01


# -- opcheck, meta, errors -----------------------------------------------------------------------------------------

def opcheck_cases(device):
    codes, zeros, scales, g_idx = random_layer(256, 128, 4, 128, False, seed=9)
    p = ops.pack(codes, zeros, scales, g_idx)
    B, s, _, b, _ = marlin_layer(256, 128, 128, False, True, torch.float16, seed=4)
    d = lambda *ts: [t.to(device) for t in ts]  # noqa: E731
    w = torch.randn(32, 128)
    return [
        ("gptq_quantize", d(w, hessian(128, 256, 1).float()), {}),
        ("pack", d(codes, zeros, scales, g_idx), {}),
        ("unpack", d(p.qweight, p.qzeros), {}),
        ("dequantize", d(p.qweight, p.qzeros, p.scales, g_idx), {}),
        ("marlin_repack", d(p.qweight) + [None, 256, 128], {}),
        ("marlin_gemm", d(torch.randn(3, 5, 256).half(), B, s) + [None, b.to(device), 256, 128, 128], {}),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for name, args, kwargs in opcheck_cases(device):
        op = getattr(torch.ops.qharness, name).default
        torch.library.opcheck(op, args, kwargs)


def test_meta_shapes_follow_the_kernels():
    for name, args, kwargs in opcheck_cases("cpu"):
        op = getattr(torch.ops.qharness, name).default
        real = op(*args, **kwargs)
        fake = op(*[a.to("meta") if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
        real, fake = (real, fake) if isinstance(real, tuple) else ((real,), (fake,))
        assert [(t.shape, t.dtype) for t in real] == [(t.shape, t.dtype) for t in fake], name


def test_errors_are_typed_and_keep_the_message():
    codes, zeros, scales, g_idx = random_layer(256, 128, 4, 128, False, seed=1)
    p = ops.pack(codes, zeros, scales, g_idx)
    with pytest.raises(qharness.ShapeError, match=r"tensor 'up_proj\.qzeros'.*expected \[2, 16\], found \[1, 16\]"):
        ops.dequantize(p.qweight, p.qzeros[:1], p.scales, g_idx, layer="up_proj")
    with pytest.raises(qharness.ConfigError, match="gptq_v2"):  # v1 cannot store a zero point of 0
        ops.pack(codes, torch.zeros_like(zeros), scales, g_idx)
    with pytest.raises(qharness.ConfigError, match="'gptq_v3'"):
        ops.unpack(p.qweight, p.qzeros, format="gptq_v3")
    with pytest.raises(qharness.NumericError, match="codes lie on the integer grid"):
        ops.pack(codes + 16, zeros, scales, g_idx)
    with pytest.raises(qharness.NumericError, match="Inf or NaN|finite|NaN"):
        ops.gptq_quantize(torch.randn(8, 64), torch.full((64, 64), float("nan")), group_size=-1)
    with pytest.raises(ValueError):  # also catchable as the builtin torch raised
        ops.marlin_repack(p.qweight, size_k=256, size_n=100)
    # The raw op keeps the same message, tagged with the kind.
    with pytest.raises(ValueError, match=r"^qharness\.ShapeError: .*K % 16 == 0 and N % 64 == 0"):
        torch.ops.qharness.marlin_repack(p.qweight, None, 256, 100)


def test_every_refusal_of_the_ops_names_the_tensor_and_the_rule():
    """The refusals added at the op edge and in the library paths the ops reach, each fed its bad input."""
    codes, zeros, scales, g_idx = random_layer(256, 128, 4, 128, False, seed=2)
    p = ops.pack(codes, zeros, scales, g_idx)
    with pytest.raises(qharness.ShapeError, match=r"tensor 'pack\.codes'.*matrix \(N, K\).*found 1"):
        ops.pack(codes.flatten(), zeros, scales, g_idx)
    with pytest.raises(qharness.ConfigError, match="GPTQ packs 2, 3, 4 or 8 bits.*found 5"):
        ops.unpack(p.qweight, p.qzeros, bits=5)
    with pytest.raises(qharness.ShapeError, match=r"tensor 'unpack\.qweight'.*2 dimensions, found 1"):
        ops.unpack(p.qweight.flatten(), p.qzeros)
    with pytest.raises(qharness.ShapeError, match=r"tensor 'unpack\.qzeros'.*expected \[2, 16\], found \[2, 8\]"):
        ops.unpack(p.qweight, p.qzeros[:, :8])
    with pytest.raises(qharness.FormatError, match=r"tensor 'unpack\.qweight'.*Int.*found Long"):
        ops.unpack(p.qweight.long(), p.qzeros)
    bad_perm = torch.arange(256, dtype=torch.int32)
    bad_perm[3] = 256
    with pytest.raises(qharness.ShapeError, match=r"tensor 'marlin_repack\.perm'.*0 \.\. 255.*0 \.\. 256"):
        ops.marlin_repack(p.qweight, bad_perm, size_k=256, size_n=128)
    B, s, _, b, _ = marlin_layer(256, 128, 128, False, False, torch.float16, seed=3)
    x = torch.randn(2, 256).half()
    with pytest.raises(qharness.NumericError, match="input must be finite.*1 of 512 values are Inf or NaN"):
        ops.marlin_gemm(torch.where(torch.arange(512).reshape(2, 256) == 7, float("inf"), x), B, s, size_k=256,
                        size_n=128, group_size=128)
    with pytest.raises(qharness.NumericError, match="overflow fp16"):
        ops.marlin_gemm(torch.full_like(x, 8), B, (s.float() * 30000).half(), size_k=256, size_n=128, group_size=128)


@pytest.mark.parametrize("device", [GPU])
def test_cuda_only_refusals(device):
    with pytest.raises(qharness.ConfigError, match="optimized \\(CUDA\\) GPTQ works in float32"):
        ops.gptq_quantize(torch.randn(8, 64, device=device), torch.eye(64, device=device), group_size=-1, float64=True)
    codes, zeros, scales, g_idx = random_layer(256, 128, 4, 128, False, seed=2)
    p = ops.pack(codes, zeros, scales, g_idx)
    with pytest.raises(qharness.ConfigError, match="share one device"):
        ops.dequantize(p.qweight.to(device), p.qzeros, p.scales, g_idx)


def test_meta_kernels_refuse_what_would_give_a_wrong_shape():
    meta = lambda t: t.to("meta")  # noqa: E731
    with pytest.raises(ValueError, match=r"^qharness\.ConfigError: GPTQ packs 2, 3, 4 or 8 bits, found 6"):
        torch.ops.qharness.dequantize(meta(torch.zeros(32, 8, dtype=torch.int32)), meta(torch.zeros(1, 1)),
                                      meta(torch.zeros(1, 8)), meta(torch.zeros(8)), 6)
    with pytest.raises(ValueError, match=r"^qharness\.ShapeError: the input's last dimension is in_features \(256\)"):
        torch.ops.qharness.marlin_gemm(meta(torch.zeros(2, 255).half()), meta(torch.zeros(16, 256)),
                                       meta(torch.zeros(1, 128)), None, None, 256, 128)
    with pytest.raises(ValueError, match=r"^qharness\.ShapeError: Marlin tiles need K % 16 == 0.*K = 40"):
        torch.ops.qharness.marlin_repack(meta(torch.zeros(5, 64, dtype=torch.int32)), None, 40, 64)
    with pytest.raises(ValueError, match=r"^qharness\.ShapeError: the weight is \(out_features, in_features\)"):
        torch.ops.qharness.gptq_quantize(meta(torch.zeros(8)), meta(torch.zeros(8, 8)))


def test_a_missing_library_says_where_it_looked(tmp_path):
    import subprocess
    import sys
    code = "import qharness"
    env = dict(os.environ, QHARNESS_LIBRARY=str(tmp_path / "nowhere.so"),
               PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "LibraryNotFound" in r.stderr and "nowhere.so" in r.stderr
