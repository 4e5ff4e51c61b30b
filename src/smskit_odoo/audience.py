"""The ``odoo`` campaign audience: the records of an Odoo model matching a domain.

Registered by the plugin (``register_audience_sources``) as the audience type ``odoo``::

    {"type": "odoo", "model": "res.partner", "phone_field": "mobile",
     "domain": [["customer_rank", ">", 0], "|", ["city", "=", "Recife"], ["city", "=", "Olinda"]],
     "fields": ["name"]}

The domain is checked as data (:func:`validate_domain`): a list of ``[field, operator, value]``
triples and the prefix operators ``"&"``, ``"|"``, ``"!"``; field names must be identifiers and
operators come from a fixed list, so a domain given as the string ``"[('id', '>', 0)]"`` is
refused and nothing is ever evaluated. Records are read with ``search_read`` ordered by id, the
cursor being the last record id (``("id", ">", cursor)``), through the kit's Odoo adapter (an
``odoo://`` store or ``SMSKIT_ODOO_URL``) or an executor given to :class:`OdooDomainSource`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, AbstractSet, Any, Dict, List, Mapping, Optional, Tuple

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.errors import ConfigurationError, ValidationError
from smskit.outreach.audience import Audience, AudienceSource, Page, text_list

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = ["DOMAIN_OPERATORS", "OdooDomainAudience", "OdooDomainSource", "OdooExecutor",
           "validate_domain"]

#: Comparison operators an Odoo domain leaf may use.
DOMAIN_OPERATORS = frozenset({
    "=", "!=", "<>", ">", ">=", "<", "<=", "=?", "like", "not like", "ilike", "not ilike",
    "=like", "=ilike", "in", "not in", "child_of", "parent_of",
})
_LOGIC = {"&": 2, "|": 2, "!": 1}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MODEL = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*$")
_SCALARS = (str, int, float, bool, type(None))


@runtime_checkable
class OdooExecutor(Protocol):
    """What the records are read through: ``execute(model, method, *args, **kwargs)`` (the
    :mod:`smskit_odoo.adapter` adapters, remote or in-process, have it)."""

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of ``model`` and return its result."""
        ...


@attrs.frozen(kw_only=True)
class OdooDomainAudience(Audience):
    """Records of an Odoo model matching a domain (data)."""

    domain: Tuple[Any, ...]
    model: str = "res.partner"
    phone_field: str = "mobile"
    fields: Tuple[str, ...] = ("name",)

    def to_data(self) -> Dict[str, Any]:
        """``{"type": "odoo", "domain", "model", "phone_field", "fields"}``."""
        return {"type": "odoo", "domain": list(self.domain), "model": self.model,
                "phone_field": self.phone_field, "fields": list(self.fields)}

    def describe(self) -> str:
        """``odoo res.partner (2 terms)``."""
        leaves = sum(1 for item in self.domain if not isinstance(item, str))
        return f"odoo {self.model} ({leaves} term{'s' if leaves != 1 else ''})"


# -- validation ----------------------------------------------------------------------------------
def _field(value: object, what: str) -> str:
    if not isinstance(value, str) or not _FIELD.match(value):
        raise ValidationError(f"{what} must be a field name (letters, digits, _ and dots), "
                              f"got {value!r}")
    return value


def _value(value: object, where: str) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    raise ValidationError(f"{where}: a value must be a string, number, boolean, null or a list "
                          f"of those, got {value!r}")


def validate_domain(domain: object) -> List[Any]:
    """An Odoo domain checked as data (see the module docs), as a JSON-able list.

    A string (``"[('id', '>', 0)]"``) is refused: smskit never evaluates a domain.
    """
    if isinstance(domain, (str, bytes)):
        raise ValidationError(
            f"an Odoo domain must be JSON data (a list such as [[\"id\", \">\", 0]]), not a "
            f"string: {domain!r} (smskit never evaluates code)")
    if not isinstance(domain, (list, tuple)):
        raise ValidationError(f"an Odoo domain must be a list, got {type(domain).__name__}")
    out: List[Any] = []
    operands = 0
    for index in range(len(domain) - 1, -1, -1):  # prefix notation: read it backwards
        item = domain[index]
        where = f"domain item #{index}"
        if isinstance(item, str):
            if item not in _LOGIC:
                raise ValidationError(f"{where}: unknown logical operator {item!r} "
                                      "(use '&', '|' or '!')")
            if operands < _LOGIC[item]:
                raise ValidationError(f"{where}: {item!r} needs {_LOGIC[item]} operand(s) "
                                      "after it")
            operands -= _LOGIC[item] - 1
            out.append(item)
            continue
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValidationError(f"{where}: expected [field, operator, value] or '&', '|', "
                                  f"'!', got {item!r}")
        name, operator, value = item
        _field(name, f"{where}: the field")
        if not isinstance(operator, str) or operator.lower() not in DOMAIN_OPERATORS:
            raise ValidationError(f"{where}: operator {operator!r} is not allowed (one of "
                                  f"{', '.join(sorted(DOMAIN_OPERATORS))})")
        checked = _value(value, where)
        if operator.lower() in ("in", "not in") and not isinstance(checked, list):
            raise ValidationError(f"{where}: {operator!r} needs a list value, got {value!r}")
        out.append([name, operator.lower(), checked])
        operands += 1
    return list(reversed(out))


# -- the source ----------------------------------------------------------------------------------
class OdooDomainSource(AudienceSource[OdooDomainAudience]):
    """Reads :class:`OdooDomainAudience` pages through ``odoo`` when given, else through the
    kit's Odoo adapter (found by the plugin, :func:`smskit_odoo.plugin.attach`)."""

    def __init__(self, odoo: Optional[OdooExecutor] = None) -> None:
        self.odoo = odoo

    def __repr__(self) -> str:
        return f"OdooDomainSource({self.odoo!r})"

    def parse(self, data: Mapping[str, Any]) -> OdooDomainAudience:
        """``domain`` (data), ``model``, ``phone_field`` and ``fields`` (template variables)."""
        model = data.get("model") or "res.partner"
        if not isinstance(model, str) or not _MODEL.match(model):
            raise ValidationError(f"an Odoo model name looks like 'res.partner', got {model!r}")
        fields = data.get("fields", ["name"])
        return OdooDomainAudience(
            model=model, domain=tuple(validate_domain(data.get("domain", []))),
            phone_field=_field(data.get("phone_field") or "mobile", "phone_field"),
            fields=tuple(_field(f, "a field") for f in text_list(fields, "fields"))
            if fields else ())

    def _executor(self, kit: SmsKit) -> OdooExecutor:
        if self.odoo is None:
            from smskit_odoo.plugin import attach

            plugin = attach(kit)
            if plugin is not None:
                return plugin.session.adapter
            raise ConfigurationError(
                "an Odoo audience needs an Odoo connection: configure an odoo:// store or "
                "SMSKIT_ODOO_URL, or give the campaigns an OdooDomainSource(odoo=<an object "
                "with execute()>)")
        return self.odoo

    def variables(self, kit: SmsKit, audience: OdooDomainAudience) -> Optional[AbstractSet[str]]:
        """The fields read (``fields``) and ``phone``: what each recipient carries."""
        return frozenset((*audience.fields, "phone"))

    def read_page(self, kit: SmsKit, audience: OdooDomainAudience, cursor: Optional[str],
                  limit: int) -> Page:
        """Records after the last id read; those without a phone are counted as skipped."""
        odoo = self._executor(kit)
        after = int(cursor or 0)
        domain = [*audience.domain, ["id", ">", after]]
        fields = list(dict.fromkeys([audience.phone_field, *audience.fields, "id"]))
        rows = odoo.execute(audience.model, "search_read", domain, fields=fields,
                            order="id asc", limit=limit)
        if not isinstance(rows, list):
            raise ValidationError(f"Odoo search_read on {audience.model} answered "
                                  f"{type(rows).__name__}, not a list")
        recipients: List[Dict[str, Any]] = []
        skipped = 0
        last = after
        for row in rows:
            last = max(last, int(row["id"]))
            phone = row.get(audience.phone_field)
            if not phone:  # Odoo says False for an empty field
                skipped += 1
                continue
            values = {f: row.get(f) for f in audience.fields if row.get(f) not in (None, False)}
            recipients.append({**values, "phone": phone})
        return Page(recipients=recipients, cursor=str(last) if rows else cursor,
                    done=len(rows) < limit, skipped=skipped)

    def cli_options(self) -> List[Any]:
        """``--odoo-domain JSON``, ``--odoo-model``, ``--phone-field`` and ``--field``."""
        import click

        return [
            click.Option(["--odoo-domain"], metavar="JSON",
                         help='Audience: Odoo records matching a domain, as JSON data '
                              '(\'[["customer_rank", ">", 0]]\').'),
            click.Option(["--odoo-model"], default="res.partner", show_default=True),
            click.Option(["--phone-field"], default="mobile", show_default=True,
                         help="With --odoo-domain: the phone field."),
            click.Option(["--field", "fields"], multiple=True, metavar="NAME",
                         help="With --odoo-domain: a field to read as a template variable "
                              "(repeatable)."),
        ]

    def from_cli(self, options: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """``--odoo-domain`` parsed as JSON (never evaluated) with the other options."""
        text = options.get("odoo_domain")
        if text is None:
            return None
        try:
            domain = json.loads(text)
        except ValueError as exc:
            raise ValidationError(
                f"--odoo-domain is not JSON ({exc}): write it as data, for example "
                "'[[\"customer_rank\", \">\", 0]]' (smskit never evaluates code)") from exc
        return {"type": "odoo", "model": options.get("odoo_model") or "res.partner",
                "domain": domain, "phone_field": options.get("phone_field") or "mobile",
                "fields": list(options.get("fields") or ()) or ["name"]}
