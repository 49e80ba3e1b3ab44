"""Reading images: the memory check reads the size from the header, also for decompression bombs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from convpress.core.errors import ConvpressError
from convpress.data.images import read_image


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height RGB pixels and carries one empty data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 20000 x 20000 is beyond Pillow's own bomb limit: that error used to be swallowed, which skipped
    # the memory check for exactly the largest images, and OpenCV then decoded them whole
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 20000, 20000)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "4G")
    with pytest.raises(ConvpressError, match="20000x20000"):
        read_image(bomb)


def test_an_animation_is_refused_instead_of_silently_keeping_its_first_frame(tmp_path: Path) -> None:
    from PIL import Image

    from convpress.core.errors import InputError

    frames = [Image.new("RGB", (16, 12), c) for c in ("red", "green", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(InputError, match="animation of 3 frames"):
        read_image(gif)
    still = tmp_path / "still.gif"
    frames[0].save(still)
    assert read_image(still).shape == (3, 12, 16)
