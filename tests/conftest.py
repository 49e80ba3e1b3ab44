"""Shared test settings: deterministic seeds and a small thread count for the 2-core CI machine."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _seed() -> None:
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two classes of 48x48 crops cut from the bundled photos, as an ImageFolder tree (12 images)."""
    from convpress.data.images import write_image
    from convpress.data.photos import bundled_photo

    root = tmp_path_factory.mktemp("photos")
    for cls, photo in (("cat", "chelsea"), ("astronaut", "astronaut")):
        img = bundled_photo(photo)
        (root / cls).mkdir(parents=True)
        for i in range(6):
            write_image(root / cls / f"{i}.png", img[:, 10 * i : 10 * i + 48, 20 * i : 20 * i + 48])
    return root
