"""The code blocks of the documentation pages, run as written.

``tests/test_docs.py`` runs them under pytest; ``.ci/run`` runs
``python tests/docs_blocks.py docs/getting-started.md`` in a virtualenv that holds only the
built wheel (no checkout on ``sys.path``), twice, in an empty directory. Standard library only.

A block may be preceded by an HTML comment that says what a test does with it (invisible on
the site): ``<!-- docs-test: run -->`` (run as a shell script), ``<!-- docs-test: check NAME -->``
(written out and checked by the test named NAME, not run) or ``<!-- docs-test: wheel -->`` (run
by ``.ci/run`` against the built wheel). Python blocks of a page run in order in one namespace.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

_BLOCK = re.compile(
    r"(?:<!--\s*docs-test:\s*(?P<tag>[^>]*?)\s*-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
    flags=re.S | re.M)


class Block(NamedTuple):
    """One fenced block: its language, its ``docs-test`` tag (or ``None``) and its text."""

    lang: str
    tag: Optional[str]
    text: str


def blocks(page: Path) -> List[Block]:
    """Every fenced block of ``page``, in order (indented ones dedented)."""
    found: List[Block] = []
    for match in _BLOCK.finditer(page.read_text(encoding="utf-8")):
        indent = match.group("indent")
        lines = match.group("body").splitlines(keepends=True)
        text = "".join(line[len(indent):] if line.startswith(indent) else line
                       for line in lines)
        found.append(Block(match.group("lang"), match.group("tag"), text))
    return found


def python_blocks(page: Path) -> List[str]:
    """The ``python`` blocks of ``page``."""
    return [block.text for block in blocks(page) if block.lang == "python"]


def run_python(page: Path) -> Dict[str, Any]:
    """Run the page's python blocks in order in one namespace, and return it."""
    namespace: Dict[str, Any] = {"__name__": "__docs__"}
    for text in python_blocks(page):
        exec(compile(text, str(page), "exec"), namespace)  # our own pages, run as written
    return namespace


if __name__ == "__main__":
    for name in sys.argv[1:]:
        run_python(Path(name))
        print(f"{name}: {len(python_blocks(Path(name)))} python blocks ran")
