"""Message templates: one safe placeholder syntax, compatible with Odoo 15 inline templates.

A placeholder is a dotted path inside double braces, with optional filters::

    Olá {{ object.partner_id.name }}, seu boleto vence em {{ due | default("breve") }}.

- A path is names and integer indexes separated by dots: ``customer.name``, ``items.0.sku``.
  Names starting with ``_`` are refused, so ``{{ __class__ }}`` and ``{{ a.__dict__ }}`` are
  template errors.
- Each step looks up a mapping key first, then an attribute; an integer step indexes a sequence
  (or looks up the integer, then the string, key of a mapping). Nothing is ever called: a step
  that reaches a method or a class is a :class:`~smskit.errors.TemplateError`.
- A value that is missing, ``None``, ``False`` (how Odoo reads an empty field) or a blank
  string (empty or only spaces: an empty CSV cell) takes the ``default("...")`` when one is
  given, else raises :class:`~smskit.errors.MissingVariableError` naming the variable and the
  recipient. ``0`` is a value. The ``keep_blank`` filter makes a blank string a value
  (``{{ complement | keep_blank }}`` writes it as it is).
- Values are written with ``str()``; nothing is escaped (an SMS is plain text).
- The default is a single- or double-quoted string; inside it ``\\"``, ``\\'`` and ``\\\\`` stand
  for the quote or the backslash, every other character is taken as written.
- ``{{`` always opens a placeholder; there is no escape for it. ``}}``, ``{%`` and ``{#`` outside a
  placeholder are plain text. ``default("...")`` and ``keep_blank`` are the only filters, each
  at most once, in any order; there are no expressions and no blocks.

A :class:`Template` is compiled once and rendered many times; :func:`render` keeps the recently
used ones compiled.
"""

from __future__ import annotations

import functools
import re
from typing import Any, List, Mapping, NoReturn, Optional, Sequence, Tuple, Union

from smskit.errors import MissingVariableError, TemplateError

__all__ = ["Template", "render"]

_OPEN = "{{"
_CLOSE = "}}"
_NAME = re.compile(r"[^\W\d]\w*")
_INDEX = re.compile(r"\d+")
_SPACES = re.compile(r"\s*")
_ESCAPABLE = frozenset("\"'\\")
_FILTERS = ("default", "keep_blank")

Step = Union[str, int]  # one step of a dotted path: a name or an index
_MISSING = object()


class _Placeholder:
    """One compiled ``{{ path | default("...") }}``."""

    __slots__ = ("default", "keep_blank", "path", "rest", "root")

    def __init__(self, path: str, root: str, rest: Tuple[Step, ...], default: Optional[str],
                 keep_blank: bool = False) -> None:
        self.path = path
        self.root = root
        self.rest = rest
        self.default = default
        self.keep_blank = keep_blank


class Template:
    """A compiled template. ``Template(source)`` raises :class:`~smskit.errors.TemplateError`
    for a malformed one, naming the problem and its line and column."""

    __slots__ = ("_parts", "_source", "_variables")

    def __init__(self, source: str) -> None:
        """Compile ``source`` once."""
        if not isinstance(source, str):
            raise TemplateError(f"a template must be a string, not {type(source).__name__}")
        self._source = source
        self._parts = _Parser(source).parse()
        seen: List[str] = []
        for part in self._parts:
            if isinstance(part, _Placeholder) and part.path not in seen:
                seen.append(part.path)
        self._variables = tuple(seen)

    @property
    def source(self) -> str:
        """The template text as given."""
        return self._source

    @property
    def variables(self) -> Tuple[str, ...]:
        """The dotted paths used, in order of first use, each once."""
        return self._variables

    @property
    def required(self) -> Tuple[str, ...]:
        """The dotted paths that must have a value (used at least once without a
        ``default``), in order of first use, each once."""
        seen: List[str] = []
        for part in self._parts:
            if isinstance(part, _Placeholder) and part.default is None and part.path not in seen:
                seen.append(part.path)
        return tuple(seen)

    def render(self, context: Mapping[str, Any], *, recipient: Optional[str] = None) -> str:
        """The text with every placeholder replaced by its value from ``context``.

        ``recipient`` (a phone, a name) only goes into the
        :class:`~smskit.errors.MissingVariableError` message, to say whose data is missing.
        """
        if not isinstance(context, Mapping):
            raise TemplateError(
                f"the template context must be a mapping of names, not {type(context).__name__}"
            )
        out: List[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = _resolve(context, part)
            if value is _MISSING:
                if part.default is None:
                    raise MissingVariableError(part.path, recipient)
                out.append(part.default)
            else:
                out.append(str(value))
        return "".join(out)

    def render_pieces(self, context: Mapping[str, Any], *,
                      recipient: Optional[str] = None) -> List[Tuple[str, bool]]:
        """:meth:`render` piece by piece: each piece of the text, and whether it is the
        template's own text (``True``) or a placeholder's value or default (``False``).
        Joined, the pieces are what :meth:`render` returns. Link tracking uses it to shorten
        only the URLs the template itself holds, never one that came in a variable."""
        if not isinstance(context, Mapping):
            raise TemplateError(
                f"the template context must be a mapping of names, not {type(context).__name__}"
            )
        pieces: List[Tuple[str, bool]] = []
        for part in self._parts:
            if isinstance(part, str):
                pieces.append((part, True))
                continue
            value = _resolve(context, part)
            if value is _MISSING:
                if part.default is None:
                    raise MissingVariableError(part.path, recipient)
                pieces.append((part.default, False))
            else:
                pieces.append((str(value), False))
        return pieces

    def __repr__(self) -> str:
        """``Template('...')`` with the source."""
        return f"Template({self.source!r})"


def _resolve(context: Mapping[str, Any], placeholder: _Placeholder) -> Any:
    """The value of the placeholder's path, or ``_MISSING``."""
    value = _checked(context.get(placeholder.root, _MISSING), placeholder, placeholder.root)
    for step in placeholder.rest:
        if value is _MISSING:
            break
        value = _checked(_follow(value, step), placeholder, step)
    if isinstance(value, str) and not placeholder.keep_blank and not value.strip():
        return _MISSING  # a blank CSV cell says "no value", as Odoo's False does
    return value


def _checked(value: Any, placeholder: _Placeholder, step: Step) -> Any:
    """``value``, or ``_MISSING`` for None/False; a callable is an error (nothing is called)."""
    if value is None or value is False:
        return _MISSING
    if value is not _MISSING and callable(value):
        raise TemplateError(
            f"template variable {placeholder.path!r}: {step!r} is a callable;"
            " templates never call anything"
        )
    return value


def _follow(value: Any, step: Step) -> Any:
    """One step of a path: a mapping key, then an attribute; an integer indexes a sequence."""
    if isinstance(step, int):
        if isinstance(value, Mapping):
            for key in (step, str(step)):
                if key in value:
                    return value[key]
            return _MISSING
        if isinstance(value, Sequence):
            return value[step] if step < len(value) else _MISSING
        return _MISSING
    if isinstance(value, Mapping) and step in value:
        return value[step]
    return getattr(value, step, _MISSING)


class _Parser:
    """Splits a source into literal strings and placeholders."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0

    def parse(self) -> Tuple[Union[str, _Placeholder], ...]:
        parts: List[Union[str, _Placeholder]] = []
        text = self.source
        while True:
            start = text.find(_OPEN, self.pos)
            if start < 0:
                if self.pos < len(text):
                    parts.append(text[self.pos :])
                return tuple(parts)
            if start > self.pos:
                parts.append(text[self.pos : start])
            self.pos = start + len(_OPEN)
            parts.append(self._placeholder(start))

    def _placeholder(self, start: int) -> _Placeholder:
        self._skip_spaces()
        if self.source.find(_CLOSE, self.pos) < 0:
            self._fail("unclosed '{{'", start)
        if self.source.startswith(_CLOSE, self.pos):
            self._fail("empty placeholder '{{ }}'", start)
        path_start = self.pos
        root, rest = self._path()
        path = self.source[path_start : self.pos]
        default: Optional[str] = None
        keep_blank = False
        self._skip_spaces()
        while self.source.startswith("|", self.pos):
            self.pos += 1
            self._skip_spaces()
            name = self._filter()
            if name == "keep_blank":
                if keep_blank:
                    self._fail("keep_blank is given twice")
                keep_blank = True
            else:
                if default is not None:
                    self._fail("default(...) is given twice")
                default = self._default()
            self._skip_spaces()
        if self.source.find(_CLOSE, self.pos) < 0:
            self._fail("unclosed '{{'", start)
        if not self.source.startswith(_CLOSE, self.pos):
            self._fail(
                f"unexpected {self._excerpt()} after {path!r}; a placeholder holds a dotted path"
                ' and optional filters: | default("...") and | keep_blank'
            )
        self.pos += len(_CLOSE)
        return _Placeholder(path, root, rest, default, keep_blank)

    def _path(self) -> Tuple[str, Tuple[Step, ...]]:
        root = self._name(first=True)
        steps: List[Step] = []
        while self.source.startswith(".", self.pos):
            self.pos += 1
            index = _INDEX.match(self.source, self.pos)
            if index:
                self.pos = index.end()
                steps.append(int(index.group()))
            else:
                steps.append(self._name(first=False))
        return root, tuple(steps)

    def _name(self, *, first: bool) -> str:
        match = _NAME.match(self.source, self.pos)
        if not match:
            wanted = "a variable name" if first else "a name or an index after '.'"
            self._fail(f"expected {wanted}, found {self._excerpt()}")
        name = match.group()
        if name.startswith("_"):
            self._fail(f"names starting with '_' are not allowed: {name!r}")
        self.pos = match.end()
        return name

    def _filter(self) -> str:
        match = _NAME.match(self.source, self.pos)
        if not match or match.group() not in _FILTERS:
            self._fail(f'unknown filter {self._excerpt()}; the filters are default("...") and '
                       "keep_blank")
        self.pos = match.end()
        return match.group()

    def _default(self) -> str:
        self._skip_spaces()
        self._expect("(", "after 'default'")
        self._skip_spaces()
        value = self._string()
        self._skip_spaces()
        self._expect(")", "to close default(...)")
        return value

    def _string(self) -> str:
        start = self.pos
        quote = self.source[self.pos : self.pos + 1]
        if quote not in ("'", '"'):
            self._fail(f"default(...) takes one quoted string, found {self._excerpt()}")
        self.pos += 1
        chars: List[str] = []
        text = self.source
        while self.pos < len(text):
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(chars)
            if char == "\\" and text[self.pos + 1 : self.pos + 2] in _ESCAPABLE:
                self.pos += 1
                char = text[self.pos]
            chars.append(char)
            self.pos += 1
        self._fail("unterminated string in default(...)", start)

    def _expect(self, token: str, purpose: str) -> None:
        if not self.source.startswith(token, self.pos):
            self._fail(f"expected {token!r} {purpose}, found {self._excerpt()}")
        self.pos += len(token)

    def _skip_spaces(self) -> None:
        match = _SPACES.match(self.source, self.pos)
        if match:
            self.pos = match.end()

    def _excerpt(self) -> str:
        rest = self.source[self.pos :]
        end = rest.find(_CLOSE)
        shown = (rest if end < 0 else rest[:end]).strip()[:20]
        if shown:
            return repr(shown)
        return repr(_CLOSE) if end >= 0 else "the end of the template"

    def _fail(self, problem: str, at: Optional[int] = None) -> NoReturn:
        where = self.pos if at is None else at
        line = self.source.count("\n", 0, where) + 1
        column = where - (self.source.rfind("\n", 0, where) + 1) + 1
        raise TemplateError(f"template error at line {line}, column {column}: {problem}")


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return Template(source)


def render(source: str, context: Mapping[str, Any], *, recipient: Optional[str] = None) -> str:
    """Render ``source`` with ``context``; the same source text is compiled only once (cached)."""
    return _compiled(source).render(context, recipient=recipient)
