"""Writing a file so that readers see the old or the new one, never a partial one (like the C++ writers): a temp
file beside the destination, fsync, rename. The temp is created like any file (umask applies); an existing
destination's mode is kept."""
import os


def write_text(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
