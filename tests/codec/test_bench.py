"""``convpress bench codec`` in quick mode with the shipped weights (the real run is in benchmarks/results)."""

from __future__ import annotations

import json
from pathlib import Path


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
    # the rANS streams match the estimate closely; the file adds 28 bytes (format version 3), 5% of the
    # lowest level's ~590-byte file of a 192x256 crop (the legacy layout's ~106 bytes were 18%)
    assert all(abs(r["stream_diff_percent"]) < 3 and r["stream_bits"] < r["actual_bits"] for r in result["estimate_vs_actual"])
    assert all(abs(r["diff_percent"]) < 10 for r in result["estimate_vs_actual"])
    assert {c["name"].split()[0] for c in result["checks"]} >= {"estimated", "BD-rate", "encode", "decode"}
    md = to_markdown(result)
    assert "| ours | q1 |" in md and "| jpeg | q95 |" in md and "QUICK" in md
    assert {"vs_jpeg_psnr_pchip_lower_half", "vs_jpeg_psnr_pchip_upper_half"} <= set(result["bd_rate_percent"]) and "| JPEG |" in md.split("lower half")[-1]
    assert "768x512 image encodes in" in readme_summary(result)
    figs = write_figures(result, tmp_path / "codec.json")
    assert figs and all(f.is_file() and f.stat().st_size > 1000 for f in figs)
