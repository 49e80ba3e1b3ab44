"""The checksummed container: its raw parts come apart and go back together exactly."""

from __future__ import annotations

import pytest

from convpress.core.container import FLAG_ZLIB, decode_container, encode_container, pack_container, split_container
from convpress.core.errors import FileFormatError

MAGIC = b"\x89TST\r\n\x1a\n"


@pytest.mark.parametrize(("header", "flags"), [({"a": 1}, 0), ({"names": ["layer"] * 50}, FLAG_ZLIB)])  # stored as is, deflated
def test_split_container_inverts_pack_container(header, flags) -> None:  # type: ignore[no-untyped-def]
    sections = [b"", b"abc", bytes(range(256))]
    data = encode_container(MAGIC, 7, header, sections)
    version, stored_flags, raw, parts = split_container(data)
    assert (version, stored_flags, parts) == (7, flags, sections)
    assert pack_container(MAGIC, version, raw, parts, flags=flags) == data
    assert decode_container(data, MAGIC, [7]).header == {**header, "sections": [0, 3, 256]}
    # a forged section with a valid checksum is well formed: only its decoder can refuse it
    forged = pack_container(MAGIC, version, raw, [b"", b"abd", parts[2]], flags=flags)
    assert decode_container(forged, MAGIC, [7]).sections[1] == b"abd"
    with pytest.raises(FileFormatError, match="checksum"):
        decode_container(forged[:-1] + bytes([forged[-1] ^ 1]), MAGIC, [7])


@pytest.mark.parametrize("depth", [33, 5_000, 200_000])
def test_deeply_nested_headers_with_valid_checksums_are_refused_in_one_line(depth: int) -> None:
    # below the parser's own limit (33) the depth check refuses; far beyond it (200,000) the parser's
    # RecursionError is caught: either way one FileFormatError, never a traceback
    from convpress.core.container import MAX_JSON_DEPTH, decode_container, pack_container

    header = b'{"sections": [], "x": ' + b"[" * depth + b"]" * depth + b"}"
    data = pack_container(b"TESTMAGI", 1, header, [])
    with pytest.raises(FileFormatError, match=f"nests deeper than {MAX_JSON_DEPTH} levels"):
        decode_container(data, b"TESTMAGI", [1], what="test file", name="f")
    ok = b'{"sections": [], "x": ' + b"[" * 30 + b"]" * 30 + b"}"  # our headers nest 4 deep: 30 is allowed
    assert decode_container(pack_container(b"TESTMAGI", 1, ok, []), b"TESTMAGI", [1], what="test file", name="f").header["sections"] == []


def test_every_convpress_format_is_known_under_its_own_magic_and_name() -> None:
    from convpress.codec import bitstream
    from convpress.core import checkpoint
    from convpress.core.container import KNOWN_FORMATS
    from convpress.fileformat import cpz

    assert KNOWN_FORMATS == {cpz.MAGIC: cpz.WHAT, bitstream.MAGIC: bitstream.WHAT, checkpoint.MAGIC: checkpoint._WHAT}


def test_a_file_of_another_convpress_format_is_named_in_the_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    import convpress as cp
    from convpress.codec import bitstream, decode_image

    path = tmp_path / "m.cpz"
    cp.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)
    with pytest.raises(
        FileFormatError, match=r"^input is not a convpress image file \(\.cpi\) \(it is a convpress model file \(\.cpz\)\)$"
    ):
        decode_image(path.read_bytes())
    cpi = tmp_path / "x.cpi"
    cpi.write_bytes(bitstream.MAGIC + b"\x00" * 40)
    with pytest.raises(
        FileFormatError, match=r"x\.cpi is not a convpress model file \(\.cpz\) \(it is a convpress image file \(\.cpi\)\)$"
    ):
        cp.load(cpi)
