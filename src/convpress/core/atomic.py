"""The one atomic write: a temporary file in the destination's folder, renamed into place.

A crash, a full disk or a kill mid-write leaves any previous file at the destination untouched
and no partial file behind. Every file convpress writes (``.cpz``, ``.cpi``, checkpoints,
weights, images, JSON reports) goes through :func:`atomic_write_bytes`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder renamed into place.

    The file gets the permissions a plain ``open(path, "wb")`` would give it (``0o666`` less the
    umask), not the private ``0o600`` of a temporary file.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
        OSError: if the folder is missing or not writable, or the disk is full (nothing is left behind).
    """
    out = Path(path)
    if not overwrite and out.exists():
        raise FileExistsError(f"{out} already exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if str(out.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _remove_stale(out)
    return out


def _remove_stale(out: Path) -> None:
    """Remove the temporary files an earlier write of ``out`` left when it was killed (SIGKILL or
    power loss skip the cleanup above): exactly our pattern, ``.NAME.<8 random characters>.tmp``."""
    folder = out.parent if str(out.parent) else Path(".")
    prefix = f".{out.name}."
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for n in names:
        middle = n[len(prefix) : -len(".tmp")]
        if len(middle) == 8 and all(c.isalnum() or c == "_" for c in middle):
            try:
                os.unlink(folder / n)
            except OSError:
                pass


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
