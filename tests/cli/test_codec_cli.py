"""``convpress codec``: encode/decode round trips and every bad input of issue 7 (exit code 2, one line)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from convpress.cli.codec import main
from convpress.codec.weights import available_qualities


@pytest.fixture(scope="module")
def quality() -> int:
    qs = available_qualities()
    assert qs, "no shipped codec weights"
    return qs[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    from convpress.data.photos import bundled_photo

    p = tmp_path_factory.mktemp("img") / "crop.png"
    rgb = (bundled_photo("coffee")[:, 50:150, 100:230].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(p), rgb[:, :, ::-1])
    return p


def _err(capsys) -> str:  # type: ignore[no-untyped-def]
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_encode_decode_round_trip_and_overwrite_rules(photo: Path, quality: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cpi, png = tmp_path / "a.cpi", tmp_path / "a.png"
    assert main(["encode", str(photo), str(cpi), "--quality", str(quality)]) == 0
    assert main(["decode", str(cpi), str(png)]) == 0
    out = cv2.imread(str(png))
    assert out.shape == (100, 130, 3)
    ref = cv2.imread(str(photo)).astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / np.mean((out - ref) ** 2))
    assert psnr > 20  # a floor: the shipped weights reconstruct the photo
    capsys.readouterr()
    before = png.read_bytes()
    assert main(["decode", str(cpi), str(png)]) == 2  # exists, no --force
    assert "already exists" in _err(capsys) and png.read_bytes() == before
    assert main(["decode", str(cpi), str(cpi), "--force"]) == 2  # never the input
    assert "same file" in _err(capsys)
    assert main(["encode", str(photo), str(photo), "--quality", str(quality), "--force"]) == 2
    _err(capsys)
    assert main(["decode", str(cpi), str(png), "--force"]) == 0
    assert main(["decode", str(cpi), str(tmp_path / "a.xyz")]) == 2
    _err(capsys)


def test_image_conversions_alpha_16bit_gray(quality: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    base = np.clip(rng.normal(128, 30, (40, 70, 3)), 0, 255).astype(np.uint8)
    rgba = np.concatenate([base, np.full((40, 70, 1), 255, np.uint8)], axis=2)
    rgba[:, :35, 3] = 0  # left half transparent: composited over white
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), base.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "gray.png"), base[:, :, 0])
    for name in ("alpha", "deep", "gray"):
        assert main(["encode", str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.cpi"), "-q", str(quality)]) == 0
        assert main(["decode", str(tmp_path / f"{name}.cpi"), str(tmp_path / f"{name}-out.png")]) == 0
        assert cv2.imread(str(tmp_path / f"{name}-out.png"), cv2.IMREAD_UNCHANGED).shape == (40, 70, 3)
    white = cv2.imread(str(tmp_path / "alpha-out.png"))[:, :30].astype(float)
    assert white.mean() > 200  # transparent pixels became white
    capsys.readouterr()
    assert main(["encode", str(tmp_path / "alpha.png"), str(tmp_path / "x.cpi"), "-q", str(quality), "--alpha", "error"]) == 2
    assert "alpha" in _err(capsys)


def test_bad_inputs_exit_2_with_one_line(photo: Path, quality: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cpi = tmp_path / "good.cpi"
    assert main(["encode", str(photo), str(cpi), "-q", str(quality)]) == 0
    data = cpi.read_bytes()
    capsys.readouterr()
    cases = {
        "corrupt": data[:40] + bytes([data[40] ^ 0x55]) + data[41:],
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "foreign": photo.read_bytes(),
        "newer": data[:8] + struct.pack("<H", 9) + data[10:],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.cpi"
        p.write_bytes(blob)
        assert main(["decode", str(p), str(tmp_path / f"{name}.png")]) == 2, name
        assert "error" in _err(capsys)
        assert not (tmp_path / f"{name}.png").exists()
    notimg = tmp_path / "notes.png"
    notimg.write_text("not an image")
    assert main(["encode", str(notimg), str(tmp_path / "n.cpi"), "-q", str(quality)]) == 2
    assert "not a readable image" in _err(capsys)
    assert main(["encode", str(photo), str(tmp_path / "u.cpi"), "-q", "99"]) == 2
    assert "quality 99" in _err(capsys)
    assert main(["encode", str(tmp_path / "missing.png"), str(tmp_path / "m.cpi"), "-q", str(quality)]) == 2
    assert "no such file" in _err(capsys)
    assert main(["decode", str(tmp_path / "missing.cpi"), str(tmp_path / "m.png")]) == 2
    _err(capsys)


def test_mismatched_model_version_is_refused(photo: Path, quality: int, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from convpress.codec import weights

    cpi = tmp_path / "v.cpi"
    assert main(["encode", str(photo), str(cpi), "-q", str(quality)]) == 0
    model, meta = weights.pretrained(quality)
    monkeypatch.setattr(weights, "pretrained", lambda q, name="hyperprior": (model, {**meta, "weights_id": "feedfacecafebeef"}))
    capsys.readouterr()
    assert main(["decode", str(cpi), str(tmp_path / "v.png")]) == 2
    assert "mismatched model version" in _err(capsys)


def test_bad_tile_and_too_little_memory_exit_2_naming_the_fix(photo: Path, quality: int, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert main(["encode", str(photo), str(tmp_path / "t.cpi"), "-q", str(quality), "--tile", "100"]) == 2
    assert "multiple of 64" in _err(capsys)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "64M")  # a real (small) limit; the estimate itself is computed
    assert main(["encode", str(photo), str(tmp_path / "t.cpi"), "-q", str(quality)]) == 2
    assert "needs about" in (err := _err(capsys)) and "--tile" in err and not (tmp_path / "t.cpi").exists()
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "200K")  # not even the decoded pixels fit: refused before decoding
    assert main(["encode", str(photo), str(tmp_path / "t.cpi"), "-q", str(quality)]) == 2
    assert "reading the 130x100 image" in _err(capsys)


def _textured(path: Path, h: int, w: int) -> None:
    """A natural-looking h x w photo: the bundled astronaut, mirrored and repeated."""
    from convpress.data.photos import bundled_photo

    a = (bundled_photo("astronaut").permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1]
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    a = np.concatenate([a, a[::-1]], axis=0)
    cv2.imwrite(str(path), np.tile(a, (-(-h // a.shape[0]), -(-w // a.shape[1]), 1))[:h, :w])


def test_tiled_codec_peak_memory_grows_much_less_than_the_image(quality: int, tmp_path: Path) -> None:
    """Peak RSS of encode and decode child processes on 0.06 and 1 megapixels in 256x256 tiles: the extra
    pixels may cost the image itself a few times over (uint8 and float copies; measured 7-36 bytes a pixel)
    but not the activations of an untiled model (measured 114-148 bytes a pixel with --tile 1024)."""
    from convpress.bench._common import run_measured

    peaks = []
    for h, w in ((256, 256), (1024, 1024)):
        png, cpi = tmp_path / f"{h}.png", tmp_path / f"{h}.cpi"
        _textured(png, h, w)
        enc = run_measured(["codec", "encode", str(png), str(cpi), "-q", str(quality), "--tile", "256"])
        dec = run_measured(["codec", "decode", str(cpi), str(tmp_path / f"{h}-out.png")])
        assert enc["returncode"] == 0 and dec["returncode"] == 0, enc["stderr"] + dec["stderr"]
        peaks.append((enc["peak_rss_bytes"], dec["peak_rss_bytes"]))
    extra_pixels = 1024 * 1024 - 256 * 256
    for i, what in enumerate(("encode", "decode")):
        per_pixel = (peaks[1][i] - peaks[0][i]) / extra_pixels
        assert per_pixel < 70, f"{what}: peak RSS grew {per_pixel:.0f} bytes per extra pixel ({peaks})"


def test_info_reports_the_file_without_decoding_and_refuses_bad_ones(photo: Path, quality: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from convpress.codec.bitstream import encode_image, read_header
    from convpress.codec.weights import pretrained
    from convpress.data.images import read_image

    cpi = tmp_path / "a.cpi"
    assert main(["encode", str(photo), str(cpi), "--quality", str(quality), "--tile", "64", "--format-version", "4"]) == 0
    capsys.readouterr()
    assert main(["info", str(cpi)]) == 0
    out = capsys.readouterr().out
    data = cpi.read_bytes()
    streams = sum(map(len, read_header(data)[1]))
    assert "format version 4" in out and "130x100, tiles of 64x64, 6 tiles" in out and f"quality {quality}" in out
    assert "the shipped weights of this level" in out and f"{len(data):,} bytes" in out
    assert f"header and checksums {len(data) - streams:,} bytes" in out and "12 sections (z, y per tile)" in out
    # a legacy file (format version 2 layout, here version 1: one tile) and other weights' files
    model, meta = pretrained(quality)
    legacy = tmp_path / "legacy.cpi"
    legacy.write_bytes(encode_image(read_image(photo), model, quality=quality, weights_id=meta["weights_id"], version=2))
    assert main(["info", str(legacy)]) == 0
    out = capsys.readouterr().out
    assert "format version 1" in out and "one tile" in out and "the shipped weights" in out
    other = tmp_path / "other.cpi"
    other.write_bytes(encode_image(read_image(photo), model, quality=quality, weights_id="0badc0de"))
    assert main(["info", str(other)]) == 0
    assert "NOT the shipped weights" in capsys.readouterr().out
    # --format-version 3 writes the clamped coding older convpress reads; info names both codings
    old = tmp_path / "v3.cpi"
    assert main(["encode", str(photo), str(old), "--quality", str(quality), "--format-version", "3"]) == 0
    assert old.read_bytes()[8:10] == b"\x03\x00"
    capsys.readouterr()
    assert main(["info", str(old)]) == 0 and "format version 3 (latents clamped to the coder's tables)" in capsys.readouterr().out
    assert main(["info", str(cpi)]) == 0 and "format version 4 (latents coded exactly)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # a usage error
        main(["encode", str(photo), str(tmp_path / "v6.cpi"), "--quality", str(quality), "--format-version", "6"])
    assert exc.value.code == 2 and "--format-version" in capsys.readouterr().err and not (tmp_path / "v6.cpi").exists()
    # a file of a level that newer weights took over: still decodes with the older file, now in the legacy package
    superseded = Path(__file__).resolve().parents[1] / "golden" / "varrate-q5-60db9802.cpi"
    assert main(["info", str(superseded)]) == 0
    out = capsys.readouterr().out
    assert "shipped weights that no longer encode this level, from convpress-legacy-weights; they still decode it" in out
    for bad in (data[:-1], data[:20], b"\x89PNG\r\n\x1a\n" + data[8:]):
        (tmp_path / "bad.cpi").write_bytes(bad)
        assert main(["info", str(tmp_path / "bad.cpi")]) == 2
        assert "bad.cpi" in _err(capsys)
    assert main(["info", str(tmp_path / "missing.cpi")]) == 2 and "no such file" in _err(capsys)
    assert main(["info", str(tmp_path)]) == 2 and "directory" in _err(capsys)


def test_model_choices_come_from_the_registry(photo: Path, quality: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from convpress.codec.models import CODEC_MODELS

    for args in (["encode", str(photo), str(tmp_path / "m.cpi"), "-q", str(quality)], ["qualities"]):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--model", "transformer"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "invalid choice: 'transformer'" in err and all(repr(n) in err for n in CODEC_MODELS)
    assert main(["qualities", "--model", "hyperprior"]) == 0 and f"quality {quality}:" in capsys.readouterr().out


def test_the_overfitted_model_encodes_with_a_budget_and_decodes_from_the_file_alone(photo: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cpi, png = tmp_path / "o.cpi", tmp_path / "o.png"
    assert main(["encode", str(photo), str(cpi), "--model", "overfit", "-q", "4", "--iterations", "15"]) == 0
    assert "quality 4" in capsys.readouterr().out
    assert main(["info", str(cpi)]) == 0
    info = capsys.readouterr().out
    assert "model    overfit, quality 4" in info and "carried in the file" in info and "net, latents per tile" in info
    assert main(["decode", str(cpi), str(png)]) == 0 and cv2.imread(str(png)).shape == (100, 130, 3)
    # a time budget: the file is complete whatever the limit cuts
    assert main(["encode", str(photo), str(tmp_path / "t.cpi"), "--model", "overfit", "-q", "4", "--seconds", "0.5"]) == 0
    assert main(["decode", str(tmp_path / "t.cpi"), str(tmp_path / "t.png")]) == 0
    capsys.readouterr()
    bad = {
        ("--seconds", "0"): "--seconds must be a positive number",
        ("--seconds", "nan"): "--seconds must be a positive number",
        ("--iterations", "-3"): "non-negative number of iterations",
        ("-q", "77"): "no quality 77 for the overfit model",
    }
    for extra, message in bad.items():
        args = ["encode", str(photo), str(tmp_path / "x.cpi"), "--model", "overfit", "-q", "4", *extra]
        assert main(args) == 2, extra
        assert message in _err(capsys)
        assert not (tmp_path / "x.cpi").exists()
    # the default model takes a time budget too (its refinement); a target does not
    assert main(["encode", str(photo), str(tmp_path / "h.cpi"), "-q", "3", "--seconds", "0.05"]) == 0
    assert re.search(r"quality 3, [1-9][\d,]* iterations? within 0.05 s per tile, 1 tile\)", capsys.readouterr().out)
    assert main(["decode", str(tmp_path / "h.cpi"), str(tmp_path / "h.png")]) == 0
    assert main(["encode", str(photo), str(tmp_path / "g.cpi"), "--target-psnr", "30", "--seconds", "5"]) == 2
    assert "--seconds bounds the encoding of one level: it takes --quality, not a target" in _err(capsys)
    assert not (tmp_path / "g.cpi").exists()
    assert main(["train", "--model", "overfit", "--work-dir", str(tmp_path / "w"), "--quality", "3", "--out", str(tmp_path / "w.st")]) == 2
    assert "nothing to train" in _err(capsys)
    assert main(["qualities", "--model", "overfit"]) == 0 and "quality 8:" in capsys.readouterr().out


def test_encode_to_a_target_psnr_or_size_and_refuse_one_no_level_meets(photo: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import re

    cpi, png = tmp_path / "t.cpi", tmp_path / "t.png"
    assert main(["encode", str(photo), str(cpi), "--target-psnr", "29"]) == 0
    line = capsys.readouterr().out
    level, db = re.search(r"quality (\d+)", line), re.search(r"([\d.]+) dB", line)
    assert level and db and float(db.group(1)) >= 29
    assert main(["decode", str(cpi), str(png)]) == 0
    ref = cv2.imread(str(photo)).astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / np.mean((cv2.imread(str(png)).astype(np.float64) - ref) ** 2))
    assert psnr == pytest.approx(float(db.group(1)), abs=0.01)  # the reported PSNR is the decoded file's
    size = cpi.stat().st_size
    assert main(["encode", str(photo), str(tmp_path / "s.cpi"), "--target-size", str(size)]) == 0
    assert (tmp_path / "s.cpi").stat().st_size <= size
    capsys.readouterr()
    for args, match in [
        (["--target-psnr", "80"], "short of the target 80 dB"),
        (["--target-size", "5"], "larger than the target 5 bytes"),
        (["--target-psnr", "30", "--model", "overfit"], "give it --quality"),
    ]:
        assert main(["encode", str(photo), str(tmp_path / "x.cpi"), *args]) == 2
        assert match in _err(capsys) and not (tmp_path / "x.cpi").exists()
    with pytest.raises(SystemExit) as exc:  # a level and a target at once: a usage error
        main(["encode", str(photo), str(tmp_path / "x.cpi"), "--quality", "2", "--target-psnr", "30"])
    assert exc.value.code == 2 and not (tmp_path / "x.cpi").exists()


def test_a_bad_bfloat16_setting_is_one_line_and_writes_nothing(photo: Path, quality: int, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVPRESS_BF16", "yes")
    out = tmp_path / "r.cpi"
    assert main(["encode", str(photo), str(out), "--quality", str(quality), "--effort", "2"]) == 2
    assert "CONVPRESS_BF16 must be 0" in _err(capsys) and not out.exists()


def test_encode_iterations_follow_the_model_and_the_budget() -> None:
    """``codec encode``'s iterations: --effort where given; else a refining hyperprior's DEFAULT_EFFORT, a
    per-image model's own default (also for --effort 0: it cannot skip fitting), 0 for a model that does
    not iterate; a time budget without iterations runs up to SECONDS_ITERATIONS."""
    from convpress.cli.codec import SECONDS_ITERATIONS, _iterations
    from convpress.codec import pretrained
    from convpress.codec.models import DEFAULT_EFFORT, build_model

    hyper, _ = pretrained(3)
    overfit, _ = pretrained(4, "overfit")
    plain = build_model("factorized", {"N": 8, "M": 8})
    assert _iterations(None, hyper, None) == DEFAULT_EFFORT
    assert _iterations(0, hyper, None) == 0 and _iterations(25, hyper, None) == 25
    assert _iterations(None, hyper, 5.0) == _iterations(0, hyper, 5.0) == SECONDS_ITERATIONS
    assert _iterations(40, hyper, 5.0) == 40
    assert _iterations(None, overfit, None) == _iterations(0, overfit, None) == overfit.DEFAULT_ITERATIONS
    assert _iterations(15, overfit, 2.0) == 15
    assert _iterations(None, plain, None) == 0


def test_format_5_is_the_default_and_correct_writes_it_and_info_reports(photo: Path, quality: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from convpress.codec.bitstream import read_header

    cpi = tmp_path / "c.cpi"
    assert main(["encode", str(photo), str(cpi), "--quality", str(quality), "--correct", "--tile", "64"]) == 0
    data = cpi.read_bytes()
    assert data[8:10] == b"\x05\x00" and len(read_header(data)[1]) == 6 * 3
    capsys.readouterr()
    assert main(["info", str(cpi)]) == 0
    out = capsys.readouterr().out
    assert "format version 5 (latents coded exactly, with a synthesis correction)" in out and " of 6 tiles (" in out
    assert "18 sections (z, y, correction per tile)" in out
    assert main(["decode", str(cpi), str(tmp_path / "c.png")]) == 0 and (tmp_path / "c.png").stat().st_size > 0
    # format 5 is the default of the transform models: the same file without --correct, or with --format-version 5
    for flags in ([], ["--format-version", "5"]):
        again = tmp_path / f"again{len(flags)}.cpi"
        assert main(["encode", str(photo), str(again), "--quality", str(quality), "--tile", "64", *flags]) == 0
        assert again.read_bytes() == data
    # the overfitted codec writes format 4 by default, and refuses format 5 with one line
    of = tmp_path / "of.cpi"
    assert main(["encode", str(photo), str(of), "--quality", "1", "--model", "overfit", "--effort", "2"]) == 0
    assert of.read_bytes()[8:10] == b"\x04\x00"
    capsys.readouterr()
    assert main(["encode", str(photo), str(tmp_path / "o5.cpi"), "--quality", "1", "--model", "overfit", "--format-version", "5"]) == 2
    assert "no synthesis layer to correct" in _err(capsys) and not (tmp_path / "o5.cpi").exists()
    # format 5 is --correct's: with another --format-version it is one clear error and nothing written
    assert main(["encode", str(photo), str(tmp_path / "d.cpi"), "--quality", str(quality), "--correct", "--format-version", "3"]) == 2
    err = _err(capsys)
    assert "--correct writes .cpi format 5" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "d.cpi").exists()
    # the overfitted family has no synthesis to correct
    assert main(["encode", str(photo), str(tmp_path / "o.cpi"), "--quality", "1", "--model", "overfit", "--correct", "--effort", "2"]) == 2
    assert "no synthesis layer to correct" in _err(capsys) and not (tmp_path / "o.cpi").exists()


def test_compare_measures_the_codec_against_the_anchors_on_the_users_image(photo: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from convpress.codec.metrics import bd_rate

    plot, js = tmp_path / "rd.png", tmp_path / "rd.json"
    args = ["compare", str(photo), "--qualities", "1,2,3,4", "--effort", "0", "--anchors", "webp,avif"]
    assert main([*args, "--plot", str(plot), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    data = json.loads(js.read_text())
    assert set(data["points"]) == {"ours", "webp", "avif"} and data["size"] == [100, 130] and plot.stat().st_size > 1000
    # each level's point is the real file `codec encode` writes, decoded
    cpi, png = tmp_path / "q2.cpi", tmp_path / "q2.png"
    assert main(["encode", str(photo), str(cpi), "-q", "2", "--effort", "0"]) == 0
    assert main(["decode", str(cpi), str(png)]) == 0
    (p,) = data["points"]["ours"]["q2"]
    src, dec = cv2.imread(str(photo)).astype(np.float64), cv2.imread(str(png)).astype(np.float64)
    assert p["bytes"] == cpi.stat().st_size and p["psnr"] == pytest.approx(10 * np.log10(255**2 / np.mean((src - dec) ** 2)))
    assert p["ms_ssim"] is None  # a side under 176 pixels
    # the BD-rates printed are those of the points written
    for anchor, name in (("webp", "WebP"), ("avif", "AVIF")):
        curves = [sorted((q for (q,) in data["points"][m].values()), key=lambda r: r["bpp"]) for m in (anchor, "ours")]
        want = bd_rate(*[[r[k] for r in c] for c in curves for k in ("bpp", "psnr")])
        assert data["bd_rate_percent"][anchor] == pytest.approx(want) and f"{name}: {want:+.1f}%" in out
    assert len([line for line in out.splitlines() if line.startswith(("ours ", "webp ", "avif "))]) == 4 + 13 + 13
    # bad settings: one line, exit 2, nothing written or overwritten
    before = js.read_bytes()
    for extra, message in (
        (["--anchors", "heic"], "unknown anchor 'heic'"),
        (["--anchors", ","], "no anchor to compare against"),
        (["--qualities", "99"], "no shipped level 99"),
        (["--qualities", "one,two"], "comma-separated integers"),
        (["--effort", "-1"], "non-negative"),
        (["--plot", str(tmp_path / "rd.txt")], ".png, .svg or .pdf"),
        (["--json", str(js)], "exists"),
    ):
        assert main([*args, *extra]) == 2, extra
        assert message in _err(capsys), extra
    assert js.read_bytes() == before and not (tmp_path / "rd.txt").exists()
    assert main(["compare", str(tmp_path / "missing.png")]) == 2 and "no such file" in _err(capsys)
