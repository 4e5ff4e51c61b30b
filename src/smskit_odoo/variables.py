"""Template variables read from Odoo on demand: ``{{ partner.name }}``,
``{{ object.partner_id.name }}``.

:class:`OdooRecordVars` is a read-only mapping over one Odoo record. Nothing is read until a
template looks a name up, so a template that uses no Odoo variable costs no round trip; the
first look-up reads the usual fields of the record at once, others are read as they are used;
a many2one value is itself an :class:`OdooRecordVars` (``object.partner_id.name``, as in
Odoo's inline templates); an empty field is ``False`` (a template ``default("...")`` applies).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from smskit_odoo.adapter import OdooAdapter

__all__ = ["FieldCache", "OdooRecordVars", "parse_record_ref"]

#: Read together on first use (those the model has).
USUAL_FIELDS = ("name", "display_name", "email", "phone", "mobile", "ref", "vat", "street",
                "city", "zip", "lang", "company_name", "function")
_SKIPPED_TYPES = ("binary", "one2many", "many2many", "properties")


class FieldCache:
    """``fields_get`` per model, read once (shared by every variable of a plugin)."""

    def __init__(self, adapter: OdooAdapter) -> None:
        self.adapter = adapter
        self._fields: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def fields(self, model: str) -> Dict[str, Any]:
        """Field name -> ``{type, relation}`` of ``model`` (readable kinds only)."""
        with self._lock:
            if model not in self._fields:
                info = self.adapter.execute(model, "fields_get",
                                            attributes=["type", "relation"])
                self._fields[model] = {k: v for k, v in info.items()
                                       if v.get("type") not in _SKIPPED_TYPES}
            return self._fields[model]


class OdooRecordVars(Mapping[str, Any]):
    """One Odoo record as a lazy mapping of its fields (see the module docs).

    ``record_id`` may be a callable resolving the id on first use (a partner found by phone);
    a record that does not exist is an empty mapping (every variable missing).
    """

    def __init__(self, cache: FieldCache, model: str,
                 record_id: Union[int, Callable[[], Optional[int]], None]) -> None:
        self._cache = cache
        self._model = model
        self._source = record_id
        self._resolved = False
        self._id: Optional[int] = None
        self._values: Dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"OdooRecordVars({self._model!r}, {self._id if self._resolved else '?'})"

    def _record_id(self) -> Optional[int]:
        if not self._resolved:
            source = self._source
            self._id = source() if callable(source) else source
            self._resolved = True
        return self._id

    def _fields(self) -> Dict[str, Any]:
        return self._cache.fields(self._model) if self._record_id() else {}

    def _read(self, names: List[str]) -> None:
        rid = self._record_id()
        if not rid or not names:
            return
        rows = self._cache.adapter.execute(self._model, "read", [rid], names)
        if not rows:
            self._id = None  # deleted since: every variable is missing
            return
        for name in names:
            self._values[name] = rows[0].get(name, False)

    def __getitem__(self, key: str) -> Any:
        fields = self._fields()
        if key not in fields:
            raise KeyError(key)
        if key not in self._values:
            wanted = [key]
            if not self._values:
                wanted += [f for f in USUAL_FIELDS if f in fields and f != key]
            self._read(wanted)
        value = self._values.get(key, False)
        relation = fields[key].get("relation")
        if fields[key].get("type") == "many2one" and value:
            rid = value[0] if isinstance(value, (list, tuple)) else value
            return OdooRecordVars(self._cache, str(relation), int(rid))
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._fields() and self._record_id() is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __bool__(self) -> bool:
        return self._record_id() is not None


def parse_record_ref(value: Any) -> Optional[Tuple[str, int]]:
    """``"account.move,42"`` or ``("account.move", 42)`` -> ``("account.move", 42)``."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        model, rid = value
    elif isinstance(value, str) and "," in value:
        model, _, rid = value.partition(",")
    else:
        return None
    try:
        return str(model).strip(), int(str(rid).strip())
    except ValueError:
        return None
