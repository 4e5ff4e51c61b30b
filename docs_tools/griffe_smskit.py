"""A Griffe extension for smskit's API reference (mkdocs.yml loads it; see docs/contributing.md).

Griffe reads the source without importing it, so three things smskit's code relies on would be
lost:

* **``#:`` comments.** smskit documents constants and fields with a ``#:`` comment above them
  (the Sphinx convention); they become the attribute's docstring here.
* **attrs classes.** ``@attrs.frozen`` / ``@attrs.define`` generate ``__init__`` at import time;
  without one the reference shows a class with no signature. This builds it from the annotated
  fields, as attrs does: ``kw_only`` (the decorator's or the field's), ``default=`` and
  ``factory=`` of :func:`attrs.field`, ``init=False`` fields left out, a private ``_value``
  taking the argument ``value``, and the fields of attrs base classes first.
* **Sphinx roles.** Docstrings name other objects with ``:class:`~smskit.x.Y``` and the like
  (read by IDEs and by Sphinx); Markdown would print the role. They become code spans (the
  last dotted part with ``~``, as Sphinx shows them).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Set, Union

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const|term):"
                   r"`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    if match.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _plain_roles(obj: griffe.Object) -> None:
    if obj.docstring is not None and ":" in obj.docstring.value:
        obj.docstring.value = _ROLE.sub(_role, obj.docstring.value)

ATTRS_DECORATORS = {
    "attrs.frozen", "attrs.define", "attrs.mutable", "attr.s", "attr.attrs", "attr.define",
    "attr.frozen", "attr.mutable", "attr.dataclass",
}
FIELD_CALLS = {"attrs.field", "attr.ib", "attr.attrib", "attr.field"}


def _comment_above(attr: griffe.Attribute) -> Optional[str]:
    """The ``#:`` comment lines right above ``attr``'s first line, joined, or ``None``."""
    try:
        lines = attr.lines_collection[attr.filepath]  # type: ignore[index]
    except (KeyError, ValueError, TypeError):
        return None
    if not attr.lineno:
        return None
    found: List[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return " ".join(found) or None


def _decorator_call(cls: griffe.Class) -> Optional[Union[griffe.Expr, str]]:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path in ATTRS_DECORATORS:
            return value
    return None


def _keywords(expr: Any) -> Dict[str, Any]:
    if not isinstance(expr, griffe.ExprCall):
        return {}
    return {arg.name: arg.value for arg in expr.arguments if isinstance(arg, griffe.ExprKeyword)}


def _parameters(cls: griffe.Class) -> List[griffe.Parameter]:
    """The ``__init__`` parameters attrs makes of ``cls``'s own fields."""
    class_kw_only = str(_keywords(_decorator_call(cls)).get("kw_only")) == "True"
    methods = [(m.lineno or 0, m.endlineno or 0) for m in cls.members.values()
               if not m.is_alias and m.is_function]
    params: List[griffe.Parameter] = []
    for member in list(cls.members.values()):
        if member.is_alias or not member.is_attribute or member.annotation is None:
            continue
        line = member.lineno or 0
        if any(start <= line <= end for start, end in methods):  # self.x = ...: not a field
            continue
        if str(member.annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = member.value
        field = _keywords(value) if isinstance(value, griffe.ExprCall) and \
            value.canonical_path in FIELD_CALLS else None
        if field is not None and str(field.get("init")) == "False":
            continue
        if field is None:
            default: Optional[Union[str, griffe.Expr]] = value
        elif "factory" in field:
            default = griffe.ExprCall(function=field["factory"], arguments=[])
        else:
            default = field.get("default")
        kw_only = class_kw_only or (field is not None and str(field.get("kw_only")) == "True")
        name = str(field.get("alias")).strip("'\"") if field and "alias" in field \
            else member.name.lstrip("_")
        params.append(griffe.Parameter(
            name, annotation=member.annotation, default=default, docstring=member.docstring,
            kind=griffe.ParameterKind.keyword_only if kw_only
            else griffe.ParameterKind.positional_or_keyword))
    return params


def _attrs_init(cls: griffe.Class) -> None:
    if "__init__" in cls.members or _decorator_call(cls) is None:
        return
    params: List[griffe.Parameter] = []
    try:
        mro = list(reversed(cls.mro()))
    except ValueError:
        mro = []
    for base in mro:
        if isinstance(base, griffe.Class) and _decorator_call(base) is not None:
            params.extend(_parameters(base))
    params.extend(_parameters(cls))
    by_name = {p.name: p for p in params}  # a subclass's field replaces its base's
    ordered = [p for p in by_name.values() if p.kind is not griffe.ParameterKind.keyword_only]
    ordered += [p for p in by_name.values() if p.kind is griffe.ParameterKind.keyword_only]
    init = griffe.Function(
        "__init__", lineno=0, endlineno=0, parent=cls, returns="None",
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
            *ordered))
    cls.set_member("__init__", init)
    cls.labels.add("attrs")


def _walk(obj: griffe.Object, seen: Set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    _plain_roles(obj)
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if member.is_attribute and member.docstring is None:
            text = _comment_above(member)  # type: ignore[arg-type]
            if text:
                member.docstring = griffe.Docstring(text, parent=member)
        if member.is_class:
            _attrs_init(member)  # type: ignore[arg-type]
        if not (member.is_module or member.is_class):
            _plain_roles(member)  # type: ignore[arg-type]
        if member.is_module or member.is_class:
            _walk(member, seen)  # type: ignore[arg-type]


class SmskitExtension(griffe.Extension):
    """``#:`` comments as docstrings, and ``__init__`` signatures for attrs classes."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Run once a package is fully loaded."""
        _walk(pkg, set())
