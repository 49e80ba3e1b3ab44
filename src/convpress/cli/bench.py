"""``convpress bench NAME --json OUT``: run a reproducible benchmark and write its JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from convpress.cli._common import check_output, subcommand_main
from convpress.core.errors import ConfigError
from convpress.core.registry import lazy_choices

__all__ = ["register", "run", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="run a reproducible benchmark and write JSON",
        description=(
            "Run one benchmark, print its summary and write the full result (with machine and "
            "library versions) as JSON. Timings are medians after warm-up, and speed is reported "
            "as ratios against a baseline measured in the same run. Benchmarks with figures (codec) "
            "also write OUT's name with the suffix .png (codec: and -tiles.png)."
        ),
    )
    p.add_argument("name", choices=lazy_choices("convpress.bench:BENCHMARKS"), metavar="NAME", help="which benchmark to run: %(choices)s")
    p.add_argument("--json", dest="json_out", required=True, metavar="OUT", help="where to write the JSON result")
    p.add_argument("--markdown", metavar="MD", help="also write the Markdown summary to this file")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (for smoke tests; figures are not comparable)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="keep the slow parts of a benchmark here (codec: the overfitted codec's files, minutes of "
        "fitting each; fip: the reference operators' outputs on the test photos), so that an interrupted "
        "run resumes and later runs reuse them",
    )
    p.add_argument(
        "--only", metavar="PART", help="run one part of a benchmark that has parts (deep-compression: recipes, one-call, records, beyond)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from convpress.bench import BENCHMARKS
    from convpress.bench._common import write_json
    from convpress.core.atomic import atomic_write_text

    out = check_output(args.json_out, force=args.force)
    md_out = check_output(args.markdown, force=True) if args.markdown else None
    bench = BENCHMARKS.get(args.name)
    import inspect

    kwargs: dict[str, Any] = {}
    if args.work_dir:
        if "work_dir" not in inspect.signature(bench.run).parameters:
            raise ConfigError(f"the {args.name} benchmark keeps nothing between runs: --work-dir does not apply to it")
        kwargs["work_dir"] = args.work_dir
    if args.only:
        if "only" not in inspect.signature(bench.run).parameters:
            raise ConfigError(f"the {args.name} benchmark has no parts: --only does not apply to it")
        kwargs["only"] = args.only
    result: dict[str, Any] = bench.run(quick=args.quick, progress=True, **kwargs)
    write_json(out, result)
    for fig in bench.write_figures(result, out) if bench.write_figures is not None else []:
        print(f"wrote {fig}", file=sys.stderr)
    md = bench.to_markdown(result)
    if md_out is not None:
        atomic_write_text(md_out, md)
    print(md)
    failed = [c for c in result.get("checks", []) if not c.get("passed", False)]
    if failed:
        names = ", ".join(c["name"] for c in failed)
        print(f"convpress bench: {len(failed)} figure(s) not met: {names}", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


main = subcommand_main("bench")
