"""The large-image figures in README.md and RELIABILITY.md are the ones their JSON holds (rendered, not copied)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, file: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_readme_and_reliability_quote_the_large_image_json_in_one_unit() -> None:
    large, mbm = _module("large_images", "large_images.py"), _module("mbm", "make_benchmarks_md.py")
    data = json.loads((ROOT / "benchmarks" / "results" / "large-images.json").read_text())
    for doc, render in (("README.md", large.readme_summary), ("RELIABILITY.md", large.to_markdown)):
        text = (ROOT / doc).read_text()
        # what make_benchmarks_md.py would write is what the file says
        assert mbm.replace_between(text, "<!-- bench:large-images -->", "<!-- /bench:large-images -->", render(data)) == text, doc
        block = text[text.index("<!-- bench:large-images -->") : text.index("<!-- /bench:large-images -->")]
        assert "GiB" in block and " GB" not in block and " MB" not in block
    enc = next(r for r in data["runs"] if r["command"].startswith("codec encode"))
    assert f"{enc['peak_rss_mb'] / 1024:.2f} GiB" in large.readme_summary(data)
