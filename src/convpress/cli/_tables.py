"""Rich tables shared by ``demo``, ``compress`` and ``inspect``."""

from __future__ import annotations

from typing import Any

__all__ = ["pipeline_table", "cpz_table", "fmt_bytes"]


def fmt_bytes(n: int) -> str:
    """Bytes with thousands separators (exact: these are sizes of real files)."""
    return f"{n:,}"


def pipeline_table(report: Any, title: str) -> Any:
    """The paper-style per-layer table of a :class:`~convpress.compress.pipeline.PipelineReport`.

    Columns give bytes on disk after pruning (P), pruning and quantization (P+Q), the paper's
    Huffman coding (P+Q+H), and convpress's final file; the last rows give whole-file bytes and
    compression ratios against dense float32.
    """
    from rich.table import Table

    coder = {"ans": "rANS", "huffman": "Huffman", "none": "fixed"}.get(report.coder, report.coder)
    t = Table(title=title, title_justify="left")
    t.add_column("layer")
    for col in ("weights", "kept", "bits", "P", "P+Q", "P+Q+H", coder, "ratio"):
        t.add_column(col, justify="right")
    for r in report.rows:
        t.add_row(
            r.name.removesuffix(".weight"),
            fmt_bytes(r.weights),
            f"{r.kept_fraction:.1%}",
            str(r.bits),
            fmt_bytes(r.p),
            fmt_bytes(r.pq),
            fmt_bytes(r.pqh),
            fmt_bytes(r.final),
            f"{r.dense / max(r.final, 1):.0f}×",
        )
    tot = report.totals
    weights = sum(r.weights for r in report.rows)
    kept = sum(r.kept for r in report.rows)
    t.add_section()
    t.add_row(
        "[bold]file[/bold]",
        fmt_bytes(weights),
        f"{kept / max(weights, 1):.1%}",
        "",
        fmt_bytes(tot["p"]),
        fmt_bytes(tot["pq"]),
        fmt_bytes(tot["pqh"]),
        f"[bold]{fmt_bytes(tot['final'])}[/bold]",
        "",
    )
    ratio = {k: f"{tot['dense'] / v:.1f}×" for k, v in tot.items()}
    t.add_row("[bold]ratio[/bold]", "", "", "", ratio["p"], ratio["pq"], ratio["pqh"], f"[bold]{ratio['final']}[/bold]", "")
    t.caption = (
        f"bytes on disk; ratio = dense float32 ({fmt_bytes(tot['dense'])} B) / file. File rows include biases, "
        "codebooks and header. P, P+Q: fixed-width codes at the paper's index widths."
    )
    return t


def cpz_table(info: Any) -> Any:
    """Per-tensor table of a :class:`~convpress.fileformat.cpz.CpzInfo`."""
    from rich.table import Table

    t = Table(title=f"{info.path}  ({info.coder} coder)", title_justify="left")
    t.add_column("tensor", no_wrap=True)
    t.add_column("shape", no_wrap=True)
    for col in ("kind", "kept", "bits", "index bits", "bytes", "ratio"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for r in info.tensors:
        t.add_row(
            r.name,
            "×".join(map(str, r.shape)) or "scalar",
            r.kind,
            f"{r.kept / max(r.numel, 1):.1%}",
            str(r.value_bits),
            str(r.index_bits) if r.index_bits else "-",
            fmt_bytes(r.stored_bytes),
            f"{r.dense_bytes / max(r.stored_bytes, 1):.1f}×",
        )
    t.add_section()
    kept = sum(r.kept for r in info.tensors)
    numel = sum(r.numel for r in info.tensors)
    t.add_row(
        "[bold]whole file[/bold]",
        f"{numel:,} values",
        "",
        f"{kept / max(numel, 1):.1%}",
        "",
        "",
        f"[bold]{fmt_bytes(info.file_bytes)}[/bold]",
        f"[bold]{info.ratio:.1f}×[/bold]",
    )
    t.caption = f"ratio = dense bytes ({fmt_bytes(info.dense_bytes)} B in all) / bytes stored"
    return t
