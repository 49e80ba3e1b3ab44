"""A folder of unlabelled images read as one batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convpress.core.errors import InputError
from convpress.data.images import write_image
from convpress.data.unlabelled import read_unlabelled


def test_images_are_stretched_or_centre_cropped_and_normalised(tmp_path: Path) -> None:
    img = torch.zeros(3, 20, 40)
    img[:, :, 10:30] = 1.0  # a bright centre band, half the width
    write_image(tmp_path / "a.png", img)
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "sub" / "b.png", torch.full((3, 10, 10), 0.5))
    gray = read_unlabelled(tmp_path, size=8, channels=1)
    assert gray.shape == (2, 1, 8, 8)
    assert gray[0, 0, :, 0].max() < 0.05 and gray[0, 0, :, 4].min() > 0.95  # stretched: the band stays half the width
    crop = read_unlabelled(tmp_path, size=8, fit="crop", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert crop.shape == (2, 3, 8, 8)
    assert crop[0, :, :, 1:7].min() > 0.95 and crop[1].abs().max() < 0.02  # inside the band (edges blur), then (0.5 - 0.5) / 0.5


def test_a_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("text")
    with pytest.raises(InputError, match="contains no images"):
        read_unlabelled(tmp_path, size=8)
