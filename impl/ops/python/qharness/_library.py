"""Finding and loading libqh_ops.so (impl/ops): the TORCH_LIBRARY(qharness) operators."""
import glob
import os

import torch

from .errors import LibraryNotFound

LIBRARY = "libqh_ops.so"
# Build folders of a clone, most common first (CMakePresets.json: build/<preset>).
PRESETS = ("default", "release", "device", "debug")


def candidates():
    """Where the library may be: $QHARNESS_LIBRARY, then build/<preset>/lib of the clone this package sits in
    (impl/ops/python/qharness -> the clone's root four levels up)."""
    env = os.environ.get("QHARNESS_LIBRARY")
    if env:
        return [env]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
    found = [os.path.join(root, "build", p, "lib", LIBRARY) for p in PRESETS]
    found += sorted(set(glob.glob(os.path.join(root, "build", "*", "lib", LIBRARY))) - set(found))
    return found


loaded_path = None  # the library this process loaded


def load():
    """Loads the library once (torch.ops.load_library); LibraryNotFound says where it looked."""
    global loaded_path
    if loaded_path is not None:
        return
    tried = candidates()
    for path in tried:
        if os.path.isfile(path):
            torch.ops.load_library(path)
            loaded_path = os.path.abspath(path)
            return
    raise LibraryNotFound(f"{LIBRARY} not found (looked at: {', '.join(tried)}); build the project "
                          "(ci/harness.sh, or cmake --build --preset default) or set QHARNESS_LIBRARY to its path")
