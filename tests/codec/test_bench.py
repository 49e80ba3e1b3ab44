"""``convpress bench codec`` in quick mode with the shipped weights (the real run is in benchmarks/results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_quick_bench_reports_every_figure_from_real_files(tmp_path: Path) -> None:
    from convpress.bench import BENCHMARKS
    from convpress.bench.codec import readme_summary, run, to_markdown, write_figures
    from convpress.codec.weights import available_qualities

    assert BENCHMARKS.get("codec").run is run and BENCHMARKS.get("codec").write_figures is write_figures
    result = run(quick=True, progress=False)
    json.dumps(result)  # serialisable as written by --json
    qualities = available_qualities()
    assert len(qualities) >= 4 and [r["quality"] for r in result["estimate_vs_actual"]] == qualities
    (name,) = result["images"]
    for q in qualities:
        (p,) = result["points"]["ours"][f"q{q}"]
        # bpp comes from the real file: whole bytes, header included
        assert p["bytes"] * 8 / (192 * 256) == p["bpp"] and p["image"] == name and 15 < p["psnr"] < 50
    bpps = [result["points"]["ours"][f"q{q}"][0]["bpp"] for q in qualities]
    assert bpps == sorted(bpps)  # a higher quality level spends more bits
    # the rANS streams match the estimate closely; the file adds 28 bytes (format versions 3-4), 5% of the
    # lowest level's ~590-byte file of a 192x256 crop (the legacy layout's ~106 bytes were 18%)
    assert all(abs(r["stream_diff_percent"]) < 3 and r["stream_bits"] < r["actual_bits"] for r in result["estimate_vs_actual"])
    assert all(abs(r["diff_percent"]) < 10 for r in result["estimate_vs_actual"])
    names = " ".join(c["name"] for c in result["checks"])
    assert all(
        k in names
        for k in ("test photos", "estimated", "vs JPEG", "vs WebP", "vs AVIF", "highest level", "encode 768x512", "decode 768x512")
    )
    md = to_markdown(result)
    assert "| ours | q1 |" in md and "| jpeg | q95 |" in md and "| avif | q95 |" in md and "QUICK" in md
    # every mode against every anchor, over the whole range and each half
    assert result["efforts"] == [0, 3]
    assert set(result["curves"]) == {"ours", "ours-e3", "format4", "overfit", "jpeg", "webp", "avif"}
    # the codec writes format 5; its baseline, format 4 at effort 0, is the same latents without the correction
    for q in qualities:
        (p5,) = result["points"]["ours"][f"q{q}"]
        (p4,) = result["points"]["format4"][f"q{q}"]
        assert p5["bytes"] > p4["bytes"] and (p5["psnr"] == p4["psnr"] or p5["psnr"] > p4["psnr"])
    c = result["correction"]
    assert 0 <= c["corrected_share"] <= 1 and c["encode_time_ratio"] > 0 and "vs_format4_psnr_pchip" in result["bd_rate_percent"]
    assert all(r["correction_bits"] >= 0 for r in result["estimate_vs_actual"])
    # the full-tile section: a 256-pixel tile here, format 4 and 5 against WebP and AVIF, with its own figure
    tiles = result["tiles"]
    assert tiles["side"] == 256 and set(tiles["curves"]) == {"format4", "ours", "webp", "avif"}
    assert {"ours_vs_format4_psnr_pchip", "ours_vs_avif_psnr_pchip", "format4_vs_webp_psnr_pchip"} <= set(tiles["bd_rate_percent"])
    assert "synthesis correction" in names and "full 256-pixel tiles" in names and "**Full tiles**" in md
    # the overfitted per-image family: real files at its levels, decoded in the run, with its decoder's cost
    for q in result["overfit"]["qualities"]:
        (p,) = result["points"]["overfit"][f"q{q}"]
        assert p["bytes"] * 8 / (192 * 256) == p["bpp"] and p["net_bytes"] > 0 and p["decode_s"] > 0
    assert "overfit_vs_webp_psnr_pchip" in result["bd_rate_percent"] and "overfit: decode 768x512" in names
    assert result["overfit"]["macs_per_pixel"]["synthesis"] <= 2000
    for key in ("vs_avif_psnr_pchip", "ours-e3_vs_webp_psnr_pchip_lower_half", "vs_jpeg_psnr_pchip_upper_half"):
        assert key in result["bd_rate_percent"]
    # effort 3 refines the latents: real files of the same quality levels, and a time beside it
    gain = result["refinement"]["ours-e3"]
    assert gain["effort"] == 3 and gain["mean_encode_s"] > 0
    changed = []
    for q in qualities:
        (a,) = result["points"]["ours-e3"][f"q{q}"]
        (b,) = result["points"]["ours"][f"q{q}"]
        changed.append(a["bytes"] != b["bytes"] or a["psnr"] != b["psnr"])
    # refinement keeps the analysis latents where 3 steps do not beat them (the variable-rate model's
    # lowest level on this small crop), but it refines most levels
    assert sum(changed) > len(qualities) // 2, changed
    # speed of every mode and anchor in the same run, as ratios against AVIF
    timing = result["timing"]["modes"]
    assert set(timing) == {"ours", "ours-e3", "overfit", "jpeg", "webp", "avif"} and timing["avif"]["encode_vs_avif"] == 1.0
    assert timing["ours-e3"]["encode_s_per_mp"] > timing["ours"]["encode_s_per_mp"]
    # the overfitted codec's encode time is this run's (its fits may be cached from an earlier run)
    of = timing["overfit"]
    assert of["encode_s_per_mp"] == of["encode_s_per_iteration_per_mp"] * of["iterations"] and of["sweep_encode_s_per_mp"] > 0
    assert "than AVIF" in readme_summary(result)
    # each photo's own BD-rates (the quick run's one photo) in the JSON, the markdown and a figure of their own
    assert set(result["per_photo"][name]) == {"avif_bpp", "ours-e3_vs_webp", "ours-e3_vs_avif"} and "**Per photo**" in md
    figs = write_figures(result, tmp_path / "codec.json")
    assert len(figs) == 3 and all(f.is_file() and f.stat().st_size > 1000 for f in figs)
    assert figs[-1].name == "codec-photos.png"


def _curve(photo: str, rates: list[float], psnrs: list[float]) -> dict[str, list[dict[str, object]]]:
    """One photo's points keyed like the anchors' settings: q30, q40, ..."""
    return {f"q{30 + 10 * i}": [{"image": photo, "bpp": r, "psnr": q}] for i, (r, q) in enumerate(zip(rates, psnrs, strict=True))}


def test_per_photo_bd_rates_are_each_photos_own() -> None:
    from convpress.bench.codec import _per_photo_lines, per_photo

    rates, psnrs = [0.1, 0.2, 0.4, 0.8, 1.6], [28.0, 31.0, 34.0, 37.0, 40.0]
    points = {"ours-e10": {}, "webp": {}, "avif": {}}
    # the codec spends twice the anchors' bits on the smooth photo and half on the textured one, which costs
    # the anchors 4x the bits of the smooth one
    for photo, base, factor in (("textured", 4.0, 0.5), ("smooth", 1.0, 2.0)):
        for mode, f in (("ours-e10", base * factor), ("webp", base), ("avif", base)):
            for k, v in _curve(photo, [r * f for r in rates], psnrs).items():
                points[mode].setdefault(k, []).extend(v)
    rows = per_photo(points, ["ours-e10", "ours-e100"])  # a mode not measured is skipped
    assert set(rows) == {"smooth", "textured"} and set(rows["smooth"]) == {"avif_bpp", "ours-e10_vs_webp", "ours-e10_vs_avif"}
    assert rows["smooth"]["ours-e10_vs_avif"] == pytest.approx(100.0) and rows["textured"]["ours-e10_vs_webp"] == pytest.approx(-50.0)
    assert rows["smooth"]["avif_bpp"] == 0.4  # AVIF's bits at quality 50
    # the markdown computes them from the points of a result written before they were recorded
    lines = "\n".join(_per_photo_lines({"points": points, "efforts": [0, 10]}))
    assert "| smooth | 0.400 | +100.0% | +100.0% |\n| textured | 1.600 | -50.0% | -50.0% |" in lines
    assert "fewer bits on 1 of 2" in lines


def test_overfitted_points_are_kept_in_the_work_dir_and_reused(tmp_path: Path) -> None:
    import numpy as np
    import torch

    from convpress.bench.codec import _overfit_point

    rgb = (np.random.default_rng(0).random((176, 176, 3)) * 255).astype(np.uint8)  # MS-SSIM needs 176 pixels
    src = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    first = _overfit_point("noise", src, rgb, 4, 3, tmp_path)
    kept = sorted(p.suffix for p in tmp_path.iterdir())
    assert kept == [".cpi", ".json"]
    again = _overfit_point("noise", src, rgb, 4, 3, tmp_path)  # read back, decoded again: the same file and time
    assert again["bytes"] == first["bytes"] and again["encode_s"] == first["encode_s"] and again["psnr"] == first["psnr"]
    other = _overfit_point("noise", src, rgb, 4, 5, tmp_path)  # another budget is another file
    assert other["iterations"] == 5 and len(list(tmp_path.iterdir())) == 4


def test_refined_files_are_kept_and_reused_by_the_same_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from convpress.bench import codec as bench
    from convpress.codec.weights import pretrained
    from convpress.data.images import to_uint8
    from convpress.data.photos import bundled_photo

    rgb = to_uint8(bundled_photo("coffee")[:, :64, :96].contiguous())
    src = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    model, meta = pretrained(1)
    data, seconds = bench._encoded("coffee", src, rgb, model, meta, 1, 2, tmp_path)
    (kept,) = tmp_path.glob("*.cpi")
    assert kept.read_bytes() == data and seconds > 0

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("encoded again")

    real = bench.encode_image
    monkeypatch.setattr(bench, "encode_image", refuse)
    assert bench._encoded("coffee", src, rgb, model, meta, 1, 2, tmp_path) == (data, seconds)
    # effort 0 is not kept (milliseconds), and other encoder code never reuses a kept file
    monkeypatch.setattr(bench, "encode_image", real)
    bench._encoded("coffee", src, rgb, model, meta, 1, 0, tmp_path)
    monkeypatch.setattr(bench, "_encoder_digest", lambda: "0123456789")
    bench._encoded("coffee", src, rgb, model, meta, 1, 2, tmp_path)
    assert len(list(tmp_path.glob("*.cpi"))) == 2
