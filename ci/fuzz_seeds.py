#!/usr/bin/env python3
"""Seed corpora for the libFuzzer targets (conformance/fuzz), made from the committed fixtures.

    python ci/fuzz_seeds.py OUT_DIR

writes OUT_DIR/<target>/<name> for fuzz_safetensors (fixture files as they are), fuzz_configs (a selector byte,
then a quantize_config.json in AutoGPTQ's, GPTQModel's and transformers' layouts for each interop fixture's settings,
or a config.json) and fuzz_verify (checkpoint directories built from the interop and Marlin fixtures, in the
target's record form: u8 file index, u32 little-endian length, bytes). Inputs that once crashed a target live in
fixtures/malformed/<target>/ and are added to its corpus, so every run replays them.
"""
import json
import pathlib
import struct
import sys

from safetensors.numpy import load_file, save

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
# fuzz_verify's file indices (conformance/fuzz/fuzz_verify.cpp kFiles).
QUANTIZE_CONFIG, CONFIG, MODEL, BASE_MODEL = 0, 1, 2, 4
LAYER = "model.layers.0.self_attn.q_proj"
# One per bit width and layout choice; enough to reach every branch of the checks, small enough to fuzz fast.
INTEROP = ["auto-gptq/b4_g128_act_sym_bias", "auto-gptq/b3_g32_act_asym_bias", "auto-gptq/b8_gm1_act_sym_nobias",
           "gptqmodel/b2_g32_noact_asym_bias", "gptqmodel/b4_gm1_noact_asym_bias"]
MARLIN = ["k128_n256_g128", "k128_n256_gm1"]


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def settings(meta):
    return {"bits": int(meta["bits"]), "group_size": int(meta["group_size"]),
            "desc_act": meta.get("desc_act") == "true", "sym": meta.get("sym") == "true"}


def config_layouts(s, checkpoint_format):
    """The same settings in AutoGPTQ's, GPTQModel's and transformers' quantize config layouts (FORMATS.md 1.7)."""
    auto_gptq = dict(s, damp_percent=0.01, static_groups=False, true_sequential=True, model_name_or_path=None,
                     model_file_base_name="model", quant_method="gptq", checkpoint_format=checkpoint_format)
    gptqmodel = dict(s, lm_head=False, quant_method="gptq", checkpoint_format=checkpoint_format, pack_dtype="int32",
                     dynamic={r"-:.*\.mlp\..*": {}, r"+:.*v_proj": {"bits": 8, "group_size": 32}},
                     meta={"quantizer": ["gptqmodel:2.2.0"], "damp_percent": 0.01, "damp_auto_increment": 0.0025,
                           "static_groups": False, "true_sequential": True})
    transformers = dict(s, quant_method="gptq", use_exllama=True, modules_to_not_convert=["lm_head"],
                        checkpoint_format=checkpoint_format)
    return [auto_gptq, gptqmodel, transformers]


def model_config(k, n, bias):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32, "hidden_size": k,
            "intermediate_size": n, "num_hidden_layers": 1, "attention_bias": bias, "tie_word_embeddings": False,
            "torch_dtype": "float16"}


def records(files):
    return b"".join(struct.pack("<BI", index, len(data)) + data for index, data in files)


def write(out, target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main(out):
    for path in sorted((FIX / "safetensors").glob("*.safetensors")) + [FIX / "interop" / (INTEROP[0] + ".safetensors")]:
        write(out, "fuzz_safetensors", path.name, path.read_bytes())

    for case in INTEROP:
        path = FIX / "interop" / (case + ".safetensors")
        meta, t = metadata(path), load_file(path)
        s = settings(meta)
        fmt = "gptq" if meta["tool"] == "auto-gptq" else "gptq_v2"  # GPTQModel's layer.qzeros are v2 words
        bias = "layer.bias" in t
        name = case.replace("/", "_")
        cfgs = config_layouts(s, fmt)
        for i, cfg in enumerate(cfgs):
            write(out, "fuzz_configs", f"{name}_quantize_{i}", b"\0" + json.dumps(cfg, indent=2).encode())
        k, n = int(meta["in_features"]), int(meta["out_features"])
        base_config = model_config(k, n, bias)
        write(out, "fuzz_configs", f"{name}_model", b"\1" + json.dumps(base_config, indent=2).encode())
        write(out, "fuzz_configs", f"{name}_base", b"\2" + json.dumps(base_config).encode())
        quantized = {f"{LAYER}.{p}": t[f"layer.{p}"] for p in ("qweight", "qzeros", "scales", "g_idx", "bias")
                     if f"layer.{p}" in t}
        base = {f"{LAYER}.weight": t["input.weight"]}
        if bias:
            base[f"{LAYER}.bias"] = t["input.bias"]
        files = [(QUANTIZE_CONFIG, json.dumps(cfgs[1]).encode()), (CONFIG, json.dumps(base_config).encode()),
                 (MODEL, save(quantized)), (BASE_MODEL, save(base))]
        write(out, "fuzz_verify", name, records(files))

    for case in MARLIN:
        path = FIX / "marlin" / "auto-gptq" / (case + ".safetensors")
        meta, t = metadata(path), load_file(path)
        cfg = dict(settings(dict(meta, desc_act="false")), quant_method="gptq", checkpoint_format="marlin")
        k, n = int(meta["K"]), int(meta["N"])
        files = [(QUANTIZE_CONFIG, json.dumps(cfg).encode()), (MODEL, save({f"{LAYER}.B": t["layer.B"],
                                                                            f"{LAYER}.s": t["layer.s"]})),
                 (BASE_MODEL, save({f"{LAYER}.weight": t["input.weight"]}))]
        write(out, "fuzz_verify", "marlin_" + case, records(files))

    for target_dir in sorted((FIX / "malformed").glob("fuzz_*")):
        for path in sorted(target_dir.iterdir()):
            write(out, target_dir.name, "malformed_" + path.name, path.read_bytes())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fuzz_seeds.py OUT_DIR")
    main(pathlib.Path(sys.argv[1]))
