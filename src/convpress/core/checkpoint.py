"""Training checkpoints (``.ckpt``): a ``torch.save`` payload inside the checksummed container.

``torch.save`` files are zip archives whose tensor bytes are not verified on load, so a flipped
byte in a weight would resume training from silently wrong numbers. Wrapping the payload in our
container (one CRC32-checked section, atomic write) makes every damaged checkpoint a
:class:`FileFormatError` instead. Payloads are read with ``weights_only=True``: no pickled code
from a checkpoint is ever executed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from convpress.core.container import decode_container, write_container
from convpress.core.errors import FileFormatError

__all__ = ["MAGIC", "VERSION", "save_checkpoint", "load_checkpoint"]

MAGIC = b"\x89CPK\r\n\x1a\n"
VERSION = 1
_WHAT = "convpress training checkpoint"


def save_checkpoint(path: str | os.PathLike[str], kind: str, payload: dict[str, Any]) -> int:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) atomically; returns bytes written.

    Args:
        path: destination; a previous checkpoint there is replaced only once the new one is complete.
        kind: what wrote it (e.g. ``"finetune"``, ``"fip-train"``); :func:`load_checkpoint` checks it.
        payload: the state to save.
    """
    buf = io.BytesIO()
    torch.save(payload, buf)
    return write_container(path, MAGIC, VERSION, {"kind": kind}, [buf.getvalue()])


def load_checkpoint(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with the same ``kind``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        FileFormatError: if the file is foreign, truncated, corrupted or of another kind.
    """
    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, not a {_WHAT}")
    box = decode_container(p.read_bytes(), MAGIC, [VERSION], what=_WHAT, name=str(p))
    if box.header.get("kind") != kind or len(box.sections) != 1:
        raise FileFormatError(f"{p} is a {box.header.get('kind')!r} checkpoint, not a {kind!r} one")
    try:
        payload = torch.load(io.BytesIO(box.sections[0]), map_location="cpu", weights_only=True)
    except Exception as exc:  # checksums passed, so only a foreign payload gets here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"{p} holds no readable checkpoint payload ({first[:120]})") from None
    if not isinstance(payload, dict):
        raise FileFormatError(f"{p} holds no checkpoint mapping")
    return payload
