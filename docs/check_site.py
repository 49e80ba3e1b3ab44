"""Open the built API reference in a headless Chromium, as a user would, and check every page.

    mkdocs build --strict && python docs/check_site.py [--site site] [--screenshots DIR]

For each page ``site/api/<package>/`` the DOM that Chromium renders (``--dump-dom``: the page
after its scripts ran) must show every name of ``<package>.__all__`` as a heading, followed by
its docstring (the first words of its first line) and, for functions and for classes whose
constructor convpress defines, its signature. Prints one line per page; exits 1 on any
failure. Needs ``chromium`` (``apt-get install chromium``); the test suite does not.
"""

from __future__ import annotations

import argparse
import html
import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = re.compile(r'<h2 id="[^"]*" class="doc doc-heading">(.*?)</h2>', re.DOTALL)
NAME = re.compile(r'<span class="doc doc-object-name[^"]*">(.*?)</span>', re.DOTALL)
ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|const):`~?([^`]+)`")


def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def dump_dom(chromium: str, page: Path) -> str:
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return run.stdout


def sections(dom: str) -> dict[str, str]:
    """Heading name -> the HTML from that top-level heading to the next one."""
    heads = list(HEADING.finditer(dom))
    out = {}
    for i, h in enumerate(heads):
        name = NAME.search(h.group(1))
        end = heads[i + 1].start() if i + 1 < len(heads) else len(dom)
        if name:
            out[text_of(name.group(1))] = dom[h.end() : end]
    return out


def needs_signature(obj: object) -> bool:
    if inspect.isfunction(obj):
        return True
    init = getattr(obj, "__init__", None)
    return inspect.isclass(obj) and getattr(init, "__module__", "").startswith("convpress")


def first_words(obj: object, n: int = 6) -> str:
    doc = (inspect.getdoc(obj) if inspect.isclass(obj) or callable(obj) else None) or ""
    line = ROLE.sub(r"\1", doc.strip().splitlines()[0] if doc.strip() else "").replace("``", "").replace("`", "")
    return " ".join(line.split()[:n])


def check_page(chromium: str, site: Path, package: str) -> list[str]:
    page = site / "api" / package / "index.html"
    if not page.is_file():
        return [f"{page} is missing"]
    dom = dump_dom(chromium, page)
    found = sections(dom)
    module = importlib.import_module(package)
    problems = []
    for name in module.__all__:
        body = found.get(name)
        if body is None:
            problems.append(f"{package}.{name}: no heading")
            continue
        obj = getattr(module, name)
        if needs_signature(obj) and "doc-signature" not in body:
            problems.append(f"{package}.{name}: no signature")
        contents = text_of(body)
        words = first_words(obj)
        if not contents or "".join(words.split()) not in "".join(contents.split()):  # tags split the text anywhere
            problems.append(f"{package}.{name}: docstring not shown (expected {words!r})")
    shown = len(module.__all__) - len({p.split(":")[0] for p in problems})
    print(f"{page.relative_to(site)}: {shown}/{len(module.__all__)} names of {package}.__all__ with heading, signature and docstring")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=ROOT / "site")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    ap.add_argument("--screenshots", type=Path, help="also save a screenshot of each page here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))  # the checkout the site documents
    args.site = args.site.resolve()
    packages = sorted(p.name for p in (args.site / "api").iterdir() if (p / "index.html").is_file())
    if not packages:
        print(f"no API pages under {args.site / 'api'}: run mkdocs build first", file=sys.stderr)
        return 1
    problems = []
    for package in packages:
        problems += check_page(args.chromium, args.site, package)
        if args.screenshots is not None:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            shot = args.screenshots / f"{package}.png"
            page = (args.site / "api" / package / "index.html").as_uri()
            subprocess.run(
                [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400", f"--screenshot={shot}", page],
                capture_output=True,
                timeout=120,
                check=True,
            )
    for p in problems:
        print("FAIL", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
