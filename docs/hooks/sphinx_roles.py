"""Griffe extension: the reStructuredText habits of the docstrings, rendered as Markdown.

The docstrings are Google style but cross-reference with Sphinx roles and introduce examples
with "::", which Markdown would show literally. A role becomes ``x`` (``B`` for ``~a.B``, as
Sphinx shows it) and a line-ending "::" becomes ":" (the indented block after it is code in
Markdown too).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _as_code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrites the roles and "::" of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = LITERAL_BLOCK.sub(":", ROLE.sub(_as_code, obj.docstring.value))
