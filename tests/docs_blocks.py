"""The code blocks of the documentation pages, run as written.

``tests/test_docs.py`` and ``tests/test_deploy_docs.py`` run them under pytest; ``.ci/run``
runs ``python tests/docs_blocks.py docs/getting-started.md`` in a virtualenv that holds only the
built wheel (no checkout on ``sys.path``), twice, in an empty directory, and
``python tests/docs_blocks.py --shell wheel --replace ... docs/deploy.md`` (the install and
upgrade commands, on the wheel). Standard library only.

A block may be preceded by an HTML comment that says what a test does with it (invisible on
the site): ``<!-- docs-test: run -->`` (run as a shell script), ``<!-- docs-test: check NAME -->``
(written out and checked by the test named NAME, not run) or ``<!-- docs-test: wheel -->`` (run
by ``.ci/run`` against the built wheel). Python blocks of a page run in order in one namespace.
"""

from __future__ import annotations

import re
import subprocess
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


def run_shell(page: Path, tag: str, replacements: Dict[str, str]) -> int:
    """Run the page's shell blocks tagged ``tag`` with bash (``-euo pipefail``), each text
    replacement applied first; how many ran (a failing one exits with its status)."""
    ran = 0
    for block in blocks(page):
        if block.tag != tag:
            continue
        script = block.text
        for old, new in replacements.items():
            script = script.replace(old, new)
        print(f"$ {script.strip()}", flush=True)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=False)
        if done.returncode:
            sys.exit(done.returncode)
        ran += 1
    return ran


def main(argv: List[str]) -> None:
    """``docs_blocks.py PAGE...`` runs the pages' python blocks; ``docs_blocks.py --shell TAG
    [--replace OLD=NEW]... PAGE`` runs the shell blocks tagged TAG."""
    if argv[:1] != ["--shell"]:
        for name in argv:
            run_python(Path(name))
            print(f"{name}: {len(python_blocks(Path(name)))} python blocks ran")
        return
    tag, rest = argv[1], argv[2:]
    replacements: Dict[str, str] = {}
    while rest[:1] == ["--replace"]:
        old, _, new = rest[1].partition("=")
        replacements[old] = new
        rest = rest[2:]
    for name in rest:
        ran = run_shell(Path(name), tag, replacements)
        if not ran:
            sys.exit(f"{name}: no shell block tagged {tag!r}")
        print(f"{name}: {ran} shell blocks tagged {tag!r} ran")


if __name__ == "__main__":
    main(sys.argv[1:])
