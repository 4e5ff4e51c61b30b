"""Find Odoo partners by phone, and create one only when none matches, never two per number.

Odoo keeps ``phone`` and ``mobile`` as free text (``"(11) 98765-4321"``), so candidates are
searched with the last 8 digits as an ``ilike`` pattern that lets anything sit between the
digits (``8%7%6%5%4%3%2%1``), plus ``phone_sanitized`` where the database has it, all phones
of a batch in one ``search_read``; each candidate is then compared in E.164
(:func:`smskit.phone.matching_e164`, as :func:`smskit.phone.same_number` compares: a mobile saved
before the Brazilian ninth digit, ``"(11) 8765-4321"``, is ``+5511987654321``).

Creation is guarded twice: the adapter's lock per number (inside an addon a PostgreSQL
advisory lock, taken before a fresh transaction begins and released only after the new partner
is committed: under REPEATABLE READ a search in a snapshot older than another request's commit
would not see that partner, and a row referring to it would fail its foreign key) and a claim
per number in the sidecar (shared by every smskit process on it, over RPC too). The number is
searched again once both are held, right before ``create``. A partner another process is
still creating is waited for, then the adapter starts a fresh transaction so it is visible.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

from smskit.errors import InvalidPhoneError
from smskit.phone import MATCH_SUFFIX_LENGTH, match_suffix, matching_e164
from smskit_odoo.adapter import OdooAdapter, fresh_transaction
from smskit_odoo.journal import Journal

__all__ = ["PartnerDirectory", "phone_domain"]

log = logging.getLogger(__name__)

_FIELDS = ("phone", "mobile")
_WAIT_STEPS = 50


def phone_domain(phones: Sequence[str], fields: Sequence[str] = _FIELDS) -> List[Any]:
    """An Odoo domain matching partners whose ``fields`` may hold one of ``phones``."""
    leaves: List[Any] = []
    for phone in dict.fromkeys(phones):
        try:
            suffix = match_suffix(phone)
        except InvalidPhoneError:
            continue
        pattern = "%".join(suffix)
        for field in fields:
            leaves.append((field, "ilike", suffix if field == "phone_sanitized" else pattern))
    if not leaves:
        return [("id", "=", 0)]
    return ["|"] * (len(leaves) - 1) + leaves


class PartnerDirectory:
    """Partners by E.164 phone, over one :class:`OdooAdapter` and the sidecar claims."""

    def __init__(self, adapter: OdooAdapter, journal: Journal, *, region: str = "BR") -> None:
        self.adapter = adapter
        self.journal = journal
        self.region = region
        self.owner = uuid.uuid4().hex
        self._fields: Optional[List[str]] = None

    def _search_fields(self) -> List[str]:
        if self._fields is None:
            info = self.adapter.execute("res.partner", "fields_get", ["phone_sanitized"],
                                        attributes=["type"])
            self._fields = list(_FIELDS) + (["phone_sanitized"] if "phone_sanitized" in info
                                            else [])
        return self._fields

    def find(self, phones: Sequence[str]) -> Dict[str, int]:
        """E.164 phone -> the (lowest-id) active partner with that number, one round trip."""
        wanted = [p for p in dict.fromkeys(phones) if p]
        if not wanted:
            return {}
        fields = self._search_fields()
        rows = self.adapter.execute("res.partner", "search_read", phone_domain(wanted, fields),
                                    fields=list(_FIELDS), order="id")
        found: Dict[str, int] = {}
        wanted_set = set(wanted)
        for row in rows:
            for field in _FIELDS:
                number = matching_e164(row.get(field), self.region)
                if number in wanted_set and number not in found:
                    found[number] = int(row["id"])
        return found

    def find_or_create(self, phones: Sequence[str],
                       names: Optional[Mapping[str, str]] = None) -> Dict[str, int]:
        """Every phone's partner, creating the missing ones (never two for one number)."""
        wanted = [p for p in dict.fromkeys(phones) if p and len(p) > MATCH_SUFFIX_LENGTH]
        found = self.find(wanted)
        missing = [p for p in wanted if p not in found]
        if not missing:
            return found
        others: List[str] = []
        with self._locks(missing):
            # from here on the snapshot is fresh: what others created before is visible
            found.update(self._recorded(missing))
            missing = [p for p in missing if p not in found]
            if missing:
                found.update(self.find(missing))
                missing = [p for p in missing if p not in found]
            if missing:
                won = self.journal.claim(missing, self.owner)
                try:
                    if won:
                        ids = self.adapter.execute("res.partner", "create", [
                            {"name": (names or {}).get(p) or p, "mobile": p} for p in won])
                        found.update(zip(won, (int(i) for i in ids)))
                        self.journal.set_partners({p: found[p] for p in won}, self.owner)
                except BaseException:
                    self.journal.release(won, self.owner)
                    raise
                others = [p for p in missing if p not in won]
        if others:
            found.update(self._wait_for(others))
            fresh_transaction(self.adapter)  # their partners came after our snapshot
        return found

    def _recorded(self, phones: Sequence[str]) -> Dict[str, int]:
        """Partners the sidecar recorded for these phones and Odoo still has (an entry whose
        partner was deleted since is forgotten)."""
        known = {p: pid for p, pid in self.journal.partners(phones).items() if pid}
        if not known:
            return {}
        alive = set(self.adapter.execute("res.partner", "search",
                                         [("id", "in", sorted(set(known.values())))]))
        self.journal.forget_partners([p for p, pid in known.items() if pid not in alive])
        return {p: pid for p, pid in known.items() if pid in alive}

    def _locks(self, phones: Sequence[str]) -> Any:
        """The adapter's lock on each phone, taken in a stable order."""
        import contextlib

        stack = contextlib.ExitStack()
        for phone in sorted(phones):
            stack.enter_context(self.adapter.lock(phone))
        return stack

    def _wait_for(self, phones: Sequence[str]) -> Dict[str, int]:
        """Partners another process is creating: wait for its claim to complete."""
        result: Dict[str, int] = {}
        pending = list(phones)
        for _ in range(_WAIT_STEPS):
            claims = self.journal.partners(pending)
            for phone in list(pending):
                partner = claims.get(phone)
                if partner is not None:
                    result[phone] = partner
                    pending.remove(phone)
            if not pending:
                return result
            if any(p not in claims for p in pending):  # a claim given up: search and claim anew
                result.update(self.find_or_create([p for p in pending if p not in claims]))
                pending = [p for p in pending if p not in result]
            time.sleep(0.05)
        result.update(self.find(pending))
        return result

    def read(self, partner_id: int, fields: Sequence[str]) -> Dict[str, Any]:
        """Some fields of one partner (empty dict when it no longer exists)."""
        rows = self.adapter.execute("res.partner", "read", [partner_id], list(fields))
        return dict(rows[0]) if rows else {}
