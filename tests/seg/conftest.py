"""Tiny segmentation folders written in tmp_path (plain images/ + masks/ layout)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers.seg import write_pair


@pytest.fixture
def plain_folder(tmp_path: Path) -> Callable[..., Path]:
    """``make(n=6, **write_pair options for the first pair)`` -> a plain images/ + masks/ folder."""

    def make(n: int = 6, **first: object) -> Path:
        root = tmp_path / "plain"
        for k in range(n):
            write_pair(root / "images" / f"im{k}.jpg", root / "masks" / f"im{k}.png", seed=k, **(first if k == 0 else {}))  # type: ignore[arg-type]
        return root

    return make
