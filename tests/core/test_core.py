"""The ground floor: registries, atomic writes, digests, the state-dict check, varints and rANS."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convpress.core import rans
from convpress.core.atomic import atomic_write_bytes, atomic_write_text
from convpress.core.digest import fingerprint, state_digest
from convpress.core.errors import ConfigError, FileFormatError
from convpress.core.registry import Registry, TypeRegistry
from convpress.core.statedict import state_mismatch
from convpress.core.varint import encode_varint, read_varint, write_varint


def test_registry_refuses_duplicates_and_suggests_names() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)

    @reg.register("beta", colour="red")
    def _beta() -> int:
        return 2

    assert reg.names() == ["alpha", "beta"] and reg.get("alpha") == 1 and reg.meta("beta") == {"colour": "red"}
    assert reg.find(lambda v: v == 1) == "alpha" and reg.find(lambda v: v == 3) is None
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 3)
    with pytest.raises(ConfigError, match=r"unknown thing 'alpa'; did you mean alpha\?"):
        reg.get("alpa")
    choices = reg.choices()
    assert "beta" in choices and "gamma" not in choices and list(choices) == ["alpha", "beta"] and len(choices) == 2


def test_registry_autoload_imports_its_package_once_on_first_read() -> None:
    import sys

    from convpress.fileformat.coders import CODERS

    assert set(CODERS.names()) >= {"ans", "huffman", "none"}
    assert "convpress.fileformat.coders.huffman" in sys.modules


def test_type_registry_looks_up_along_the_mro() -> None:
    reg: TypeRegistry[str] = TypeRegistry("handler")
    reg.register(torch.nn.Module, "any module")
    reg.register(torch.nn.Conv2d, "conv")
    assert reg.lookup(torch.nn.Conv2d) == "conv"
    assert reg.lookup(torch.nn.Linear) == "any module"
    assert reg.lookup(int) is None
    with pytest.raises(ValueError, match="Conv2d is already registered"):
        reg.register(torch.nn.Conv2d, "again")


def test_atomic_write_gives_normal_permissions_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = atomic_write_bytes(tmp_path / "a.bin", b"abc")
    mask = os.umask(0)
    os.umask(mask)
    assert out.read_bytes() == b"abc" and stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    with pytest.raises(FileExistsError):
        atomic_write_text(out, "x", overwrite=False)
    assert atomic_write_text(out, "é").read_text(encoding="utf-8") == "é"
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "missing" / "b.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no temporary file left


def test_state_digest_and_fingerprint() -> None:
    a = {"w": torch.zeros(2, 3), "b": torch.ones(3)}
    d = state_digest(a)
    assert len(d) == 64 and d == state_digest(dict(reversed(a.items())))
    assert d != state_digest({"w": torch.zeros(3, 2), "b": torch.ones(3)})  # shape counts
    assert d != state_digest({"w": torch.zeros(2, 3, dtype=torch.float64), "b": torch.ones(3)})  # dtype counts
    assert d != state_digest({"w": torch.zeros(2, 3), "c": torch.ones(3)})  # names count
    assert fingerprint({"a": 1, "b": (1, 2)}) == fingerprint({"b": [1, 2], "a": 1}) != fingerprint({"a": 2, "b": [1, 2]})
    with pytest.raises(TypeError):
        fingerprint({"a": object()})


def test_state_mismatch_names_what_does_not_fit() -> None:
    want = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    assert state_mismatch(want, dict(want)) is None
    got = {"a": torch.zeros(5), "b": torch.zeros(3), "x": torch.zeros(1)}
    assert state_mismatch(want, got) == "missing c; unexpected x; wrong shapes a (5,) vs (2,)"
    assert state_mismatch(want, {"a": torch.zeros(2), "b": torch.zeros(3)}, optional=lambda k: k == "c") is None


@given(st.integers(0, (1 << 63) - 1))
def test_varint_round_trip(v: int) -> None:
    data = encode_varint(v)
    buf = bytearray(b"\x07")
    write_varint(v, buf)
    assert bytes(buf[1:]) == data and read_varint(b"\x07" + data, 1, limit=1 << 64) == (v, 1 + len(data))


def test_varints_are_bounded() -> None:
    with pytest.raises(FileFormatError, match="truncated"):
        read_varint(b"\x80\x80", 0)
    with pytest.raises(FileFormatError, match="out of range"):
        read_varint(encode_varint(1000), 0, limit=999)
    with pytest.raises(FileFormatError, match="longer than 2 bytes"):
        read_varint(b"\x80\x80\x01", 0, max_bytes=2)
    with pytest.raises(FileFormatError, match="truncated"):
        read_varint(b"\x80\x01", 0, end=1)
    with pytest.raises(ValueError):
        encode_varint(-1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_rans_groups_round_trip_under_their_models(seed: int, normalized: bool) -> None:
    rng = np.random.default_rng(seed)
    groups = []
    for k in range(3):
        counts = rans.pmf_to_counts(rng.random(2 + 3 * k))
        groups.append((rng.integers(0, len(counts), size=int(rng.integers(0, 50))), rans.categorical(counts, normalized=normalized)))
    words = rans.encode(groups)
    out, rest = rans.decode(words, [(len(s), m) for s, m in groups])
    assert rest.size == 0 and all(np.array_equal(a, s) for a, (s, _) in zip(out, groups, strict=True))
    # values pushed onto a stream come off first and leave the stream as it was
    bound = rans.encode([(np.array([3, 1]), rans.uniform(5))], onto=words)
    (values,), left = rans.decode(bound, [(2, rans.uniform(5))], exhaust=False)
    assert values.tolist() == [3, 1] and np.array_equal(left, words)


def test_rans_refuses_leftovers_and_broken_words() -> None:
    counts = rans.pmf_to_counts(np.array([0.5, 0.25, 0.25]))
    words = rans.encode([(np.array([0, 1, 2, 0]), rans.categorical(counts))])
    with pytest.raises(FileFormatError, match="leftover"):
        rans.decode(np.concatenate([words, np.array([7], dtype=np.uint32)]), [(4, rans.categorical(counts))])
    with pytest.raises(FileFormatError, match="whole number of 32-bit words"):
        rans.words_from_bytes(rans.words_to_bytes(words)[:-1])
    with pytest.raises(FileFormatError, match="non-empty"):
        rans.words_from_bytes(b"", allow_empty=False)
    many = np.tile([0, 1, 2, 0], 1000)  # 1.5 bits of information per symbol
    assert 6000 <= rans.payload_bits(many, rans.categorical(counts)) <= 6000 + 64  # plus at most two words of state


def test_lazy_exports_load_a_name_on_first_access_and_keep_it() -> None:
    import sys
    import types

    from convpress.core.lazy import lazy_exports

    pkg = types.ModuleType("lazy_pkg_for_test")
    pkg.__getattr__ = lazy_exports("lazy_pkg_for_test", {"dumps": "json", "JSONDecoder": "json.decoder"})  # type: ignore[attr-defined]
    sys.modules["lazy_pkg_for_test"] = pkg
    try:
        import json

        assert "dumps" not in vars(pkg) and pkg.dumps is json.dumps and "dumps" in vars(pkg)
        assert pkg.JSONDecoder is json.JSONDecoder
        with pytest.raises(AttributeError, match="has no attribute 'loads'"):
            pkg.loads  # noqa: B018
    finally:
        del sys.modules["lazy_pkg_for_test"]


def test_the_documented_public_names_import() -> None:
    import convpress as cp
    from convpress.codec import decode_image, encode_image, pretrained  # noqa: F401
    from convpress.fip import apply_network, load_network, run_reference, shipped_weights  # noqa: F401

    for name in cp.__all__:
        assert getattr(cp, name) is not None, name


def test_no_public_name_is_also_a_submodule() -> None:
    # found by the API reference (issue 23): convpress.fip exported the function train and
    # convpress.codec the function gdn, but importing the submodules fip.train and codec.gdn
    # binds the modules under those names, so the name meant the function or the module
    # depending on what had been imported before
    import importlib
    import pkgutil

    import convpress

    subpackages = [importlib.import_module(i.name) for i in pkgutil.walk_packages(convpress.__path__, "convpress.") if i.ispkg]
    for package in [convpress, *subpackages]:
        submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        assert not set(getattr(package, "__all__", [])) & submodules, package.__name__


def test_a_write_removes_the_temporary_files_a_killed_write_left(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # issue 22: a SIGKILL during a write leaves .NAME.<random>.tmp; the next write of NAME removes it
    import subprocess
    import sys

    from convpress.core.atomic import atomic_write_bytes

    out = tmp_path / "model.cpz"
    code = (
        "import os, signal, tempfile, sys; from pathlib import Path; out = Path(sys.argv[1]); "
        "fd, tmp = tempfile.mkstemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent); os.write(fd, b'partial'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], check=False)
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".model.cpz.") and stale[0].endswith(".tmp")
    (tmp_path / ".model.cpz.notours").write_bytes(b"keep")  # not our pattern: never touched
    (tmp_path / ".other.cpz.abcd1234.tmp").write_bytes(b"keep")  # another destination's: not ours to judge
    atomic_write_bytes(out, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.cpz.notours", ".other.cpz.abcd1234.tmp", "model.cpz"]
    assert out.read_bytes() == b"whole"
