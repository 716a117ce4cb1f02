"""Atomic file writes: a reader never sees a half-written file, and the result has normal permissions.

Every writer in Cadenza (audio, controls, CSV, JSON, figures, checkpoints, caches) goes through
``atomic_path``: write to a temporary file in the destination's folder, then ``os.replace`` it
over the destination, which is atomic on one file system. ``tempfile.mkstemp`` creates its file
with mode 0600 (private to the owner); left as is, every output would be unreadable by the
group and by a web server, unlike a file made with ``open``. So the temporary file is given
``0o666 & ~umask`` before the rename, exactly the mode ``open(path, "w")`` would have produced.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it; between the two calls another thread (the
    studio writes from worker threads) would create files with the wrong mode. Linux shows the
    umask in ``/proc/self/status``; elsewhere fall back to the set-and-restore read.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``suffix`` is the temporary file's ending, for writers that pick the format from the name
    (soundfile, ``numpy.savez`` adds ``.npz`` when it is missing). The destination's folder is
    created if needed. If the body raises, the old ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, with ``\\n`` line endings on every platform."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="\n") as fh:
            fh.write(text)
    return Path(path)
