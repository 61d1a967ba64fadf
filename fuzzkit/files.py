"""Files fuzzkit writes (findings, stores, reports): atomically, and with the permissions
the user's umask gives.

:mod:`tempfile` creates files 0600 and folders 0700 whatever the umask, which is right for
secrets and wrong for a reports folder a team shares: each temporary file and folder is given
the mode an ordinary ``open`` or ``mkdir`` would have given it before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from fuzzkit.errors import ConfigError


def umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file(folder: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """:func:`tempfile.mkstemp` in ``folder``, with the mode ``open(..., "w")`` would give."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~umask())
    return fd, tmp


def temp_dir(folder: Path, prefix: str) -> Path:
    """:func:`tempfile.mkdtemp` in ``folder``, with the mode ``mkdir`` would give."""
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=prefix))
    tmp.chmod(0o777 & ~umask())
    return tmp


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, so no reader sees half a file; the
    temporary file is removed whatever happens, and a folder that cannot be written
    (read-only, full) is a :class:`ConfigError` naming the file."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path.parent, f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def slug(title: str) -> str:
    """A folder and file name for ``title``: its words, then a hash of the whole title so
    titles that share a long prefix stay apart."""
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    digest = hashlib.sha256(title.encode()).hexdigest()[:8]
    return f"{words[:60].rstrip('-')}-{digest}"
