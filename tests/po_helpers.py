"""Reading gettext ``.po`` / ``.pot`` files, for the tests of the addons' translations."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["po_entries"]


def po_entries(path: Path) -> Dict[str, str]:
    """msgid -> msgstr of a ``.po`` file (strings continued on the lines after, as gettext
    writes them); the header (empty msgid) left out."""
    entries: Dict[str, str] = {}
    parts: Dict[str, List[str]] = {}
    current: Optional[str] = None

    def flush() -> None:
        msgid = "".join(parts.get("msgid", []))
        if msgid:
            entries[msgid] = "".join(parts.get("msgstr", []))

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("msgid "):
            flush()
            parts, current = {"msgid": [ast.literal_eval(line[6:])]}, "msgid"
        elif line.startswith("msgstr "):
            parts["msgstr"], current = [ast.literal_eval(line[7:])], "msgstr"
        elif line.startswith('"') and current:
            parts[current].append(ast.literal_eval(line))
    flush()
    return entries
