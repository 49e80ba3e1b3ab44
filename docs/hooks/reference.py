"""MkDocs hooks: the API reference and the command-line pages, generated at every build.

* API: the nav of ``mkdocs.yml`` names one page ``api/<package>.md`` per public package; each
  is generated here with one mkdocstrings block per name of the package's ``__all__``, read at
  build time (the lazy packages build ``__all__`` from their table of lazy exports, which griffe
  cannot evaluate), so a new public name is documented without editing the docs. A public name
  without a docstring, or a public method of a public class without one (its own or inherited),
  fails the build.
* CLI: one page per ``convpress`` subcommand (``SUBCOMMANDS`` of :mod:`convpress.cli.main`),
  holding the ``--help`` text of the command and of its own subcommands; the hook also lists
  these pages under the nav's "Command line" section.

The pages document this checkout: ``src/`` goes first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
API_DIR = "api/"
CLI_DIR = "cli/"
CLI_SECTION = "Command line"
HELP_COLUMNS = 80  # width of the --help texts (a terminal's, and what fits the page), whatever the terminal the build runs in


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Put ``src/`` first on the path and list the subcommand pages in the nav."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from convpress.cli.main import SUBCOMMANDS

    for entry in config.nav or []:
        if isinstance(entry, dict) and CLI_SECTION in entry:
            entry[CLI_SECTION] = [f"{CLI_DIR}index.md", *({f"convpress {name}": f"{CLI_DIR}{name}.md"} for name in SUBCOMMANDS)]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated API and CLI pages to the site's files."""
    checker = _DocstringCheck()
    for uri in _nav_pages(config.nav or []):
        if uri.startswith(API_DIR):
            files.append(File.generated(config, uri, content=api_page(uri[len(API_DIR) : -len(".md")], checker)))
    checker.raise_if_missing()
    for uri, content in cli_pages().items():
        files.append(File.generated(config, uri, content=content))
    return files


def _nav_pages(nav: list[Any]) -> Iterator[str]:
    for entry in nav:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from _nav_pages(value if isinstance(value, list) else [value])


# --- API ---------------------------------------------------------------------------------------


class _DocstringCheck:
    """Finds public names (and public methods of public classes) that have no docstring."""

    def __init__(self) -> None:
        self.loader = griffe.GriffeLoader(search_paths=[str(SRC)])
        self.loader.load("convpress")
        self.missing: list[str] = []

    def target(self, package: str, name: str, obj: object) -> str:
        """The path mkdocstrings renders for ``package.name``: where a class or function is defined."""
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and "<locals>" not in obj.__qualname__:
            path = f"{obj.__module__}.{obj.__qualname__}"
        else:  # data: griffe follows the package's import to the assignment
            path = f"{package}.{name}"
        try:
            found = self.loader.modules_collection.get_member(path)
            found = found.final_target if found.is_alias else found
        except (KeyError, griffe.AliasResolutionError) as exc:
            raise PluginError(f"{package}.{name}: griffe cannot find {path} ({exc!r})") from None
        if not found.docstring or not found.docstring.value.strip():
            self.missing.append(f"{package}.{name} ({path})")
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                method = isinstance(value, (property, classmethod, staticmethod)) or inspect.isfunction(value)
                if method and not attr.startswith("_") and not inspect.getdoc(getattr(obj, attr)):
                    self.missing.append(f"{package}.{name}.{attr} ({path}.{attr})")
        return path

    def raise_if_missing(self) -> None:
        if self.missing:
            raise PluginError("public names without a docstring:\n  " + "\n  ".join(self.missing))


def api_page(package: str, checker: _DocstringCheck) -> str:
    """The reference page of ``package``: its docstring, then every name of its ``__all__``."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise PluginError(f"{API_DIR}{package}.md: no package {package!r} to document ({exc})") from None
    names = list(getattr(module, "__all__", []))
    if not names:
        raise PluginError(f"{API_DIR}{package}.md: {package} has no __all__ to document")
    lines = [
        f"# `{package}`",
        "",
        f"::: {package}",
        "    options:",
        "      show_root_heading: false",
        "      members: false",
        "",
        f"The public names below are the {len(names)} names of `{package}.__all__`, each importable as `{package}.NAME`.",
        "",
    ]
    for name in names:
        lines += [f"::: {checker.target(package, name, getattr(module, name))}", ""]
    return "\n".join(lines)


# --- CLI ---------------------------------------------------------------------------------------


@contextmanager
def _help_width() -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)  # argparse wraps to the terminal size it reads from here
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand of ``parser``, in the order --help shows them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a table cell


def _help_block(parser: argparse.ArgumentParser) -> list[str]:
    return ["```text", parser.format_help().rstrip(), "```", ""]


def _command_sections(parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} `{parser.prog}`", "", *_help_block(parser)]
    for _name, _help, sub in _subcommands(parser):
        lines += _command_sections(sub, level + 1)
    return lines


def cli_pages() -> dict[str, str]:
    """``cli/index.md`` (``convpress --help`` and the list of commands) and one page per subcommand."""
    from convpress.cli.main import build_parser

    with _help_width():
        parser = build_parser()
        commands = _subcommands(parser)
        index = [
            "# Command line",
            "",
            "One entry point, `convpress`; every subcommand has `--help`. These pages are the `--help` texts, "
            "generated when the documentation is built.",
            "",
            *_help_block(parser),
            "| command | what it does |",
            "|---|---|",
            *(f"| [`convpress {name}`]({name}.md) | {_cell(summary)} |" for name, summary, _ in commands),
            "",
        ]
        pages = {f"{CLI_DIR}index.md": "\n".join(index)}
        for name, _summary, sub in commands:
            pages[f"{CLI_DIR}{name}.md"] = "\n".join(_command_sections(sub, 1))
    return pages
