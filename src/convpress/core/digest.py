"""The one state digest and the one run fingerprint.

:func:`state_digest` names a set of weights: a SHA-256 over every tensor's name, dtype, shape and
bytes, in name order. Codec weights are known by its first 8 hex digits (their ``weights_id``,
stored in every ``.cpi`` file), and a fine-tune's run fingerprint includes the digest of the
weights it starts from. :func:`fingerprint` names a training run: a SHA-256 of its settings in
canonical JSON, so a checkpoint is only ever resumed by the run that wrote it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["state_digest", "fingerprint"]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (64 hex digits) of every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def fingerprint(settings: Any) -> str:
    """16 hex digits naming ``settings`` (JSON-serialisable; tuples count as lists, keys are sorted).

    Raises:
        TypeError: if ``settings`` holds something JSON cannot represent.
    """
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
