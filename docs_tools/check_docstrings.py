"""Every public name of smskit has a docstring: an mkdocs hook (the strict docs build fails)
and a function ``tests/test_api_docs.py`` calls.

Public: a module whose dotted path has no part starting with ``_``; in it, the names of its
``__all__`` (or, without one, the names not starting with ``_``) that it defines itself; in a
public class, its own methods and properties not starting with ``_``. Each of those modules,
classes, functions, methods and properties needs a docstring. Attributes (fields, constants)
are rendered with their type and value either way, documented by a ``#:`` comment or a string
below them where the name does not say enough.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, List, Sequence

import griffe

PACKAGES = ("smskit", "smskit_kolmeya", "smskit_odoo", "smskit_acrux")
ROOT = Path(__file__).resolve().parent.parent


def _public_members(obj: griffe.Object) -> Iterable[griffe.Object]:
    for name, member in obj.members.items():
        if member.is_alias:
            continue
        if obj.is_module:
            if member.is_module:
                if not name.startswith("_"):
                    yield member
                continue
            exported = obj.exports
            if exported is not None:
                if name not in {str(e) for e in exported}:
                    continue
            elif name.startswith("_"):
                continue
        elif name.startswith("_"):
            continue
        yield member


def _walk(obj: griffe.Object, missing: List[str]) -> None:
    if not obj.docstring or not obj.docstring.value.strip():
        missing.append(f"{obj.kind.value} {obj.path}")
    for member in _public_members(obj):
        if member.is_attribute:
            continue
        if member.is_module or member.is_class:
            _walk(member, missing)  # type: ignore[arg-type]
        elif not member.docstring or not member.docstring.value.strip():
            missing.append(f"{member.kind.value} {member.path}")


def missing_docstrings(search_path: Path = ROOT / "src",
                       packages: Sequence[str] = PACKAGES) -> List[str]:
    """``"<kind> <path>"`` for every public name of ``packages`` without a docstring."""
    missing: List[str] = []
    for name in packages:
        package = griffe.load(name, search_paths=[str(search_path)], docstring_parser="sphinx")
        _walk(package, missing)  # type: ignore[arg-type]
    return missing


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """mkdocs hook: fail the build when a public name has no docstring."""
    from mkdocs.exceptions import PluginError

    missing = missing_docstrings()
    if missing:
        raise PluginError("public names without a docstring (see docs_tools/"
                          "check_docstrings.py):\n  " + "\n  ".join(missing))
