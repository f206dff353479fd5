"""Typed exceptions for the qharness ops.

The C++ library throws typed errors (impl/core/errors.h) that name the file, tensor or layer, the rule, what was
expected and what was found. The op layer passes them to torch as "qharness.<Kind>: <message>" (a ValueError for
shapes, configuration and formats, a RuntimeError otherwise); the wrappers in qharness.ops re-raise them as the
classes below, each also a subclass of the builtin torch raised, so `except ValueError` keeps working.
"""
import contextlib
import re

__all__ = ["QharnessError", "ShapeError", "ConfigError", "FormatError", "NumericError", "IoError", "LibraryNotFound",
           "typed_errors"]


class QharnessError(Exception):
    """Base of every error qharness raises; the message is the library's, whole."""


class ShapeError(QharnessError, ValueError):
    """Tensor shapes or sizes that do not fit the operation or the format."""


class ConfigError(QharnessError, ValueError):
    """Settings outside what is supported (bits, group size, format, device)."""


class FormatError(QharnessError, ValueError):
    """Malformed packed data (a g_idx outside the groups, wrong dtypes of stored buffers)."""


class NumericError(QharnessError, RuntimeError):
    """Numerical failures: NaN/Inf inputs, an unrecoverable Hessian, codes off the integer grid, fp16 overflow."""


class IoError(QharnessError, OSError):
    """The operating system refused (open, read, write)."""


class LibraryNotFound(QharnessError, ImportError):
    """libqh_ops.so was not found: build the project (ci/harness.sh or cmake --build) or set QHARNESS_LIBRARY."""


_KINDS = {"ShapeError": ShapeError, "ConfigError": ConfigError, "FormatError": FormatError,
          "NumericError": NumericError, "IoError": IoError, "Error": QharnessError}
_TAGGED = re.compile(r"qharness\.(\w+): (.*)", re.S)


def from_torch(exc):
    """The typed exception for an error an op raised, or None when it did not come from qharness."""
    m = _TAGGED.search(str(exc))
    if m is None:
        return None
    message = m.group(2).split("\nException raised from ")[0].rstrip()  # torch's C++ trace, when it adds one
    return _KINDS.get(m.group(1), QharnessError)(message)


@contextlib.contextmanager
def typed_errors():
    """Re-raises qharness errors from the ops as the typed classes above; anything else passes unchanged."""
    try:
        yield
    except (RuntimeError, ValueError) as e:
        typed = from_torch(e)
        if typed is None or isinstance(e, QharnessError):
            raise
        raise typed from None
