#!/usr/bin/env python3
"""Checks the machine code (SASS) of every kernel we ship, with cuobjdump, for the failures a run can miss.

Usage: ci/check_sass.py LIBRARY_OR_BINARY --arch sm_80 --arch sm_90a [--cuobjdump PATH]

Per architecture, every kernel of the file must be present (no architecture silently left to PTX JIT) and:
- no local memory (LDL/STL: a register array indexed at run time, or spills) in any kernel;
- every uniform register that a global-memory instruction uses as its memory descriptor (`desc[URn]`) is written
  earlier in the kernel. This is the shape of the nvcc 13 miscompile of `cp.async` with an L2 cache-policy operand
  for sm_90 seen in the published Marlin: the descriptor register was never initialized and the kernel died with
  "illegal instruction" at run time (issue 6);
- the Marlin GEMM kernels use the instructions they were written for: HMMA (tensor cores), LDGSTS (cp.async),
  LDSM (ldmatrix); its Hopper kernels UTMALDG (the TMA load of A) and UBLKCP (the bulk copies of the weights and
  scales) in their sm_90a code (elsewhere they are a trap), with HGMMA (wgmma) or HMMA and LDSM.
Exit 0 when all hold, 1 with one line per finding otherwise, 2 when the tool or the file is missing.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

# (name marker, the architecture it applies to or None for all, opcodes the kernel must contain)
REQUIRED = (("marlin_gemm_kernel", None, ("HMMA", "LDGSTS", "LDSM")),
            ("marlin_gemm_wgmma_kernel", "sm_90a", ("HGMMA", "UTMALDG", "UBLKCP")),
            ("marlin_gemm_tma_kernel", "sm_90a", ("HMMA", "LDSM", "UTMALDG", "UBLKCP")))
GLOBAL_MEMORY = re.compile(r"^(LDG|STG|LDGSTS|ATOMG|RED|LD|ST)\b")
INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
UNIFORM = re.compile(r"\bUR(\d+)\b")


def wheel_tools():
    """cuobjdump from the nvidia-cuda-cuobjdump wheel in ci/requirements.txt (the CUDA toolkit here has none)."""
    try:
        import nvidia  # namespace package of the NVIDIA wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        path = os.path.join(root, "cu13", "bin", "cuobjdump")
        if os.access(path, os.X_OK):
            return path
    return None


def find_cuobjdump(explicit):
    for candidate in (explicit, shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump", wheel_tools()):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def kernels_by_arch(cuobjdump, path):
    """{arch: {kernel name: [(opcode, operands), ...]}} from `cuobjdump -sass`."""
    env = dict(os.environ, PATH=os.path.dirname(cuobjdump) + os.pathsep + os.environ.get("PATH", ""))  # nvdisasm
    text = subprocess.run([cuobjdump, "-sass", path], check=True, capture_output=True, text=True, env=env).stdout
    result, arch, kernel = {}, None, None
    for line in text.splitlines():
        m = re.search(r"arch = (sm_\w+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s+Function : (\S+)", line)
        if m and arch:
            kernel = m.group(1)
            result.setdefault(arch, {})[kernel] = []
            continue
        m = INSTRUCTION.search(line)
        if m and arch and kernel:
            result[arch][kernel].append((m.group(2), m.group(3)))
    return result


def written_uniforms(opcode, operands):
    """Uniform registers an instruction writes: its first operand, both halves for 64-bit forms."""
    first = operands.split(",")[0].strip()
    m = re.fullmatch(r"UR(\d+)", first)
    if not m:
        return set()
    n = int(m.group(1))
    return {n, n + 1} if ".64" in opcode or opcode.startswith("ULDC") else {n}


def check_kernel(arch, kernel, body):
    name = f"{arch} {kernel}"
    findings = []
    opcodes = {op.split(".")[0] for op, _ in body}
    for bad in ("LDL", "STL"):
        if bad in opcodes:
            findings.append(f"{name}: uses local memory ({bad})")
    written = set()
    for opcode, operands in body:
        base = opcode.split(".")[0]
        if GLOBAL_MEMORY.match(base):
            for m in re.finditer(r"desc\[UR(\d+)\]", operands):
                if int(m.group(1)) not in written:
                    findings.append(f"{name}: {opcode} reads memory descriptor UR{m.group(1)} before anything "
                                    f"writes it (the nvcc 13 cp.async cache-policy miscompile)")
        written |= written_uniforms(opcode, operands)
    for marker, only_on, needed in REQUIRED:
        if marker in kernel and only_on in (None, arch):
            for op in needed:
                if op not in opcodes:
                    findings.append(f"{name}: expected {op} instructions, found none")
    return findings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--arch", action="append", required=True, help="an architecture the build targets")
    parser.add_argument("--cuobjdump")
    args = parser.parse_args()
    tool = find_cuobjdump(args.cuobjdump)
    if tool is None:
        print("check_sass: cuobjdump not found (PATH, /usr/local/cuda/bin or --cuobjdump)", file=sys.stderr)
        return 2
    if not os.path.exists(args.file):
        print(f"check_sass: {args.file} does not exist (build first)", file=sys.stderr)
        return 2
    sass = kernels_by_arch(tool, args.file)
    all_kernels = sorted({k for arch in sass.values() for k in arch})
    findings = []
    for arch in args.arch:
        present = sass.get(arch, {})
        for kernel in all_kernels:
            if kernel not in present:
                findings.append(f"{kernel}: no {arch} machine code")
        for kernel, body in sorted(present.items()):
            findings += check_kernel(arch, kernel, body)
    for line in findings:
        print(line)
    counts = ", ".join(f"{arch}: {len(sass.get(arch, {}))} kernels" for arch in args.arch)
    print(f"check_sass: {args.file}: {counts}; {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
