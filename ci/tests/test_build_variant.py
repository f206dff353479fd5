"""perf/build_variant.sh refuses bad arguments and a base build it cannot use before it compiles anything (exit 2
and a message naming what is wrong)."""
import os
import subprocess

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(ROOT, "perf", "build_variant.sh")


def run(args, base=None, cwd=ROOT):
    env = dict(os.environ)
    if base is not None:
        env["QH_VARIANT_BASE"] = base
    return subprocess.run(["bash", SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def fake_base(tmp_path, cache_text):
    """A base build folder with a kernel library and the given CMakeCache.txt, as a path from the tree (as
    QH_VARIANT_BASE is read)."""
    base = tmp_path / "base"
    (base / "kernels").mkdir(parents=True)
    (base / "kernels" / "libqh_kernels.a").write_bytes(b"!<arch>\n")
    (base / "CMakeCache.txt").write_text(cache_text)
    return os.path.relpath(base, os.path.abspath(ROOT))


def test_usage_and_a_bad_tag_are_refused():
    r = run([])
    assert r.returncode == 2 and "perf/build_variant.sh TAG" in r.stderr
    r = run(["two words"])
    assert r.returncode == 2 and "TAG must be letters, digits, - or _" in r.stderr


def test_a_missing_base_build_is_named():
    r = run(["x"], base="build/no-such-preset")
    assert r.returncode == 2 and "no-such-preset/kernels/libqh_kernels.a: build that preset first" in r.stderr


def test_a_base_without_a_cuda_compiler_and_bad_arguments_are_refused(tmp_path):
    r = run(["x"], base=fake_base(tmp_path, "CMAKE_CXX_COMPILER:FILEPATH=/usr/bin/c++\n"))
    assert r.returncode == 2 and "no CUDA compiler in" in r.stderr
    base = fake_base(tmp_path / "ok", "CMAKE_CUDA_COMPILER:STRING=/bin/true\n")  # an executable: the lookup passes
    r = run(["x", "no-such.patch"], base=base)
    assert r.returncode == 2 and "no patch no-such.patch" in r.stderr
    r = run(["x", "-DNOT_OURS=1"], base=base)
    assert r.returncode == 2 and "neither a .patch nor -DQH_NAME=VALUE" in r.stderr
