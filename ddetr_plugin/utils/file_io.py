"""Atomic file writes: readers see the old file or the complete new one, never half of one."""
import os
import tempfile


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write_fn, binary: bool = True) -> None:
    """Call ``write_fn(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``.

    Readers see either the old file or the complete new one; on any error (or a crash) the
    temporary file is removed (or left as a hidden ``.<name>.*.tmp``) and ``path`` is unchanged.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    _fsync_directory(directory)
