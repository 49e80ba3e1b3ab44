"""Merge a part measured alone (``convpress bench NAME --only PART --json PART.json``) into a full result.

The part's section replaces the one in the full result, its checks replace that section's old
checks (matched by name), and a line saying when and at which commit it was measured is added
to the result's ``measured`` list. Parts kept under one key only (deep-compression: one-call,
records, beyond); the recipes part is a full run.

Usage: python benchmarks/merge_bench_part.py benchmarks/results/deep-compression.json PART.json --note "..."
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("full", type=Path, help="the full result JSON (rewritten)")
    p.add_argument("part", type=Path, help="the JSON of the one part")
    p.add_argument("--note", default="", help="said after the date and commit (threads, machine load)")
    p.add_argument("--commit", help="the commit the part was measured at (default: HEAD)")
    args = p.parse_args()
    full = json.loads(args.full.read_text())
    part = json.loads(args.part.read_text())
    if part.get("benchmark") != full.get("benchmark"):
        raise SystemExit(f"{args.part} is a {part.get('benchmark')} result, not {full.get('benchmark')}")
    (name,) = part["parts"]
    key = name.replace("-", "_")
    if key not in part:
        raise SystemExit(f"part {name!r} is not kept under one key; re-run the whole benchmark instead")
    old_names = {c["name"] for c in full.get(key, {}).get("checks", [])}
    full["checks"] = [c for c in full["checks"] if c["name"] not in old_names] + part[key]["checks"]
    full[key] = part[key]
    if name not in full["parts"]:
        full["parts"].append(name)
    rev = args.commit or "HEAD"
    commit = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True, check=True).stdout.strip()
    when = part[key]["environment"]["date"]
    line = f"{name}: measured {when} with `convpress bench {full['benchmark']} --only {name}` at commit {commit}"
    full["measured"] = [m for m in full.get("measured", []) if not m.startswith(f"{name}:")] + [
        line + (f" ({args.note})" if args.note else "")
    ]
    args.full.write_text(json.dumps(full, indent=2) + "\n")
    print(f"merged {name} into {args.full}")


if __name__ == "__main__":
    main()
