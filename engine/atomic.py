"""Publishing files atomically: written under a temporary name, renamed into place.

A reader (or a user after a crash) sees the old file or the whole new one,
never half of it. Temporary files are dot-files beside the target, so the
rename stays on one file system.
"""

from __future__ import annotations

import os
import tempfile

# The process umask, read once at import: os.umask can only be read by setting
# it, and setting it later could race with another thread creating a file.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def temporary_beside(path: str | os.PathLike) -> tuple[int, str]:
    """A new private temporary file next to `path`: (file descriptor, name)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    return tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)


def publish(temporary: str, path: str | os.PathLike) -> None:
    """Give `temporary` the mode a plain open() would, and rename it over `path`."""
    os.chmod(temporary, 0o666 & ~_UMASK)
    os.replace(temporary, path)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file (OSError on failure)."""
    fd, temporary = temporary_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        publish(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
