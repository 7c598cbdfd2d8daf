"""Replacing a small file durably: keys, certificates, DKIM state, the user agent's files.

The new content goes to a temporary name created with its final mode (so a key or a
password file is never readable by others, not even for a moment), is fsync'ed, renamed
over the old file and the directory fsync'ed: after a crash the file is wholly old or
wholly new. (The spool has its own writers, whose directory fsyncs are shared.)

Standards: POSIX rename(2), fsync(2)
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Make `path` hold `data`, atomically and durably; its directory must exist."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
