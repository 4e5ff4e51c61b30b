"""Does a template fit an audience? Checked when a campaign is created, so a template naming a
column the audience lacks is refused with the column named, instead of a campaign that starts
and rejects every message.

A variable is there when the campaign's own variables give it, when the audience's source
says its recipients carry it (:meth:`~smskit.outreach.audience.AudienceSource.variables`: a
CSV file's header), or, for a source that cannot tell, when a recipient of the first page has
it. The ``prepare_message`` hooks (Odoo's ``partner``) add variables of their own: they are
asked for the first recipient before anything is refused. Only placeholders without a
``default(...)`` need a value; a blank cell is a per-recipient matter (that message is
rejected), not the audience's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AbstractSet, Any, Dict, List, Mapping, Optional, Set, Tuple

from smskit.errors import ValidationError
from smskit.models import Message
from smskit.phone import Phone
from smskit.template import Template

if TYPE_CHECKING:
    from smskit.kit import SmsKit
    from smskit.outreach.audience import Audience, AudienceSource, Page

__all__ = ["check_fit", "hook_variables", "missing_variables", "required_roots"]


def required_roots(template: Template) -> List[str]:
    """The variables ``template`` needs a value for (no ``default``): the first step of each
    such path, in order, each once."""
    return list(dict.fromkeys(path.split(".", 1)[0] for path in template.required))


def hook_variables(kit: SmsKit, recipient: Mapping[str, Any], phone: object, *,
                   provider: Optional[str] = None) -> Set[str]:
    """The variables the ``prepare_message`` hooks add for one recipient (``recipient``: its
    template context; ``phone``: its number as given): Odoo's ``partner``, say."""
    try:
        e164 = Phone.parse(phone, kit.settings.default_region, allow_landlines=True).e164
    except ValidationError:
        e164 = str(phone)
    draft = Message(phone=e164, body="", provider=provider or kit.settings.provider)
    added: Set[str] = set()
    for extra in kit.hooks.prepare_message(message=draft, context=dict(recipient)):
        if extra:
            added.update(extra)
    return added


def missing_variables(kit: SmsKit, source: AudienceSource[Any], audience: Audience,
                      template: Template, variables: Mapping[str, Any], *,
                      provider: Optional[str] = None,
                      limit: int = 1000) -> Tuple[Tuple[str, ...], AbstractSet[str], bool]:
    """``(missing, known, from_header)``: the variables ``template`` needs that nothing gives,
    the names the audience's recipients were found to carry, and whether those came from the
    source itself (``True``) or from the first ``limit`` recipients."""
    needed = [name for name in required_roots(template) if name not in variables]
    if not needed:
        return (), frozenset(), True
    told = source.variables(kit, audience)
    page: Optional[Page] = None
    if told is None:
        page = source.read_page(kit, audience, None, limit)
        if not page.recipients:
            return (), frozenset(), False  # nobody to ask: the recipients will tell
        known: Set[str] = set()
        for recipient in page.recipients:
            known.update(recipient)
    else:
        known = set(told)
    missing = [name for name in needed if name not in known]
    if missing and kit.hooks.prepare_message.get_hookimpls():
        missing = _not_from_hooks(kit, source, audience, page, variables, missing, provider)
    return tuple(missing), frozenset(known), told is not None


def _not_from_hooks(kit: SmsKit, source: AudienceSource[Any], audience: Audience,
                    page: Optional[Page], variables: Mapping[str, Any], missing: List[str],
                    provider: Optional[str]) -> List[str]:
    """``missing`` less what the ``prepare_message`` hooks add for the first recipient."""
    if page is None:
        page = source.read_page(kit, audience, None, 1)
    if not page.recipients:
        return []
    first: Dict[str, Any] = {**variables, **page.recipients[0]}
    added = hook_variables(kit, first, first.get(page.phone_field), provider=provider)
    return [name for name in missing if name not in added]


def check_fit(kit: SmsKit, source: AudienceSource[Any], audience: Audience, template: str,
              variables: Mapping[str, Any], *, provider: Optional[str] = None) -> None:
    """Raise :class:`~smskit.errors.ValidationError` naming the variables ``template`` needs
    that the audience's recipients lack (see the module docs)."""
    missing, known, from_header = missing_variables(
        kit, source, audience, Template(template), variables, provider=provider)
    if not missing:
        return
    names = ", ".join(repr(name) for name in missing)
    plural = "s" if len(missing) > 1 else ""
    have = ", ".join(sorted(known)) or "none"
    if from_header:
        where = f"the audience ({audience.describe()}) has no column{plural} {names} " \
                f"(columns: {have})"
    else:
        where = f"no recipient of the first page of the audience ({audience.describe()}) has " \
                f"the variable{plural} {names} (they have: {have})"
    raise ValidationError(
        f"the template needs {names} but {where}: add the column, give the value as a campaign "
        f'variable, or a default in the template ({{{{ {missing[0]} | default("...") }}}})')
