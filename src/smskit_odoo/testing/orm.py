"""A small in-memory imitation of Odoo 15's ORM, as seen through ``execute_kw``.

It implements what smskit calls, with Odoo's observable behaviour: ``search``/``search_read``
with domains (``&``, ``|``, ``!``, dotted many2one paths, ``active`` filtering), ``read``,
``create`` (one dict or a list, all or nothing), ``write``, ``unlink``, ``fields_get``,
``load`` (import rows, ``.id`` updates, per-row error messages and all-or-nothing), typed
values (many2one as ``[id, name]``, datetimes as naive UTC strings, ``False`` for empty),
``_sql_constraints`` and ``@api.constrains`` reported as ``odoo.exceptions.ValidationError``,
``AccessError`` for denied operations and ``UserError`` for an unknown model. Each call is
one transaction: a failure undoes everything the call did.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
import threading
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

import attrs

from smskit.timeutil import zone

__all__ = ["Field", "FakeError", "Model", "Orm", "Record"]

Record = Dict[str, Any]
Method = Callable[["Orm", "Model", int, List[Any], Dict[str, Any]], Any]

_DT = "%Y-%m-%d %H:%M:%S"


@functools.lru_cache(maxsize=16384)
def _like_regex(pattern: str, insensitive: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if insensitive else re.DOTALL)


Node = Tuple[str, Any]


def _evaluate(node: Node, record: Record) -> bool:
    """A compiled domain on one record (``and``/``or`` stop at the first answer)."""
    kind, payload = node
    if kind == "leaf":
        return bool(payload(record))
    if kind == "not":
        return not _evaluate(payload[0], record)
    if kind == "or":
        return any(_evaluate(child, record) for child in payload)
    return all(_evaluate(child, record) for child in payload)


class FakeError(Exception):
    """An Odoo error object: ``name`` as Odoo serialises it, ``message`` its text."""

    def __init__(self, name: str, message: str, arguments: Sequence[Any] = ()) -> None:
        self.name = name
        self.message = message
        self.arguments = list(arguments) or [message]
        super().__init__(message)

    def to_rpc(self) -> Dict[str, Any]:
        """The ``error`` member of a JSON-RPC response, as Odoo 15 builds it."""
        code = 100 if self.name.endswith("SessionExpiredException") else 200
        message = "Odoo Session Expired" if code == 100 else "Odoo Server Error"
        return {"code": code, "message": message, "data": {
            "name": self.name, "debug": f"Traceback (most recent call last):\n{self.name}: "
            f"{self.message}", "message": self.message, "arguments": self.arguments,
            "context": {}}}


def validation(message: str) -> FakeError:
    """``odoo.exceptions.ValidationError``."""
    return FakeError("odoo.exceptions.ValidationError", message)


@attrs.define
class Field:
    """One field of a model."""

    type: str
    string: str = ""
    relation: Optional[str] = None
    selection: Optional[List[Tuple[str, str]]] = None
    required: bool = False
    readonly: bool = False
    default: Any = None


@attrs.define
class Model:
    """A model: its fields, records, constraints and extra methods."""

    name: str
    description: str
    fields: Dict[str, Field]
    records: Dict[int, Record] = attrs.field(factory=dict)
    next_id: int = 1
    unique: List[Tuple[str, Tuple[str, ...], str]] = attrs.field(factory=list)
    constraints: List[Callable[[Record], Optional[str]]] = attrs.field(factory=list)
    methods: Dict[str, Method] = attrs.field(factory=dict)
    rec_name: str = "name"
    on_create: Optional[Callable[[Orm, Record], None]] = None

    def display_name(self, record: Record) -> str:
        """What ``name_get`` would say."""
        value = record.get(self.rec_name)
        return str(value) if value else f"{self.name},{record['id']}"


class Orm:
    """The database: models by name, users, access rules and the undo log of the call."""

    def __init__(self) -> None:
        self.models: Dict[str, Model] = {}
        self.lock = threading.RLock()
        self.denied: Set[Tuple[int, str, str]] = set()
        self.user_tz = "America/Sao_Paulo"
        self._undo: Optional[List[Tuple[str, int, Optional[Record]]]] = None

    # -- schema -----------------------------------------------------------------------
    def add_model(self, name: str, description: str, fields: Mapping[str, Field],
                  **options: Any) -> Model:
        """Install a model (the magic ``id``, ``display_name``, dates are added)."""
        all_fields: Dict[str, Field] = {
            "id": Field("integer", "ID", readonly=True),
            "display_name": Field("char", "Display Name", readonly=True),
            "create_date": Field("datetime", "Created on", readonly=True),
            "write_date": Field("datetime", "Last Updated on", readonly=True),
        }
        all_fields.update(fields)
        model = Model(name=name, description=description, fields=all_fields, **options)
        self.models[name] = model
        return model

    def model(self, name: str) -> Model:
        """A model by name, or Odoo's ``UserError`` for an unknown one."""
        found = self.models.get(name)
        if found is None:
            raise FakeError("odoo.exceptions.UserError", f"Object {name} doesn't exist")
        return found

    # -- access -----------------------------------------------------------------------
    def deny(self, uid: int, model: str, operation: str) -> None:
        """Refuse ``operation`` (read/write/create/unlink) on ``model`` to user ``uid``."""
        self.denied.add((uid, model, operation))

    def check(self, uid: int, model: Model, operation: str) -> None:
        """Raise ``AccessError`` as Odoo words it when ``operation`` is denied."""
        if (uid, model.name, operation) in self.denied:
            verb = {"read": "read", "write": "modify", "create": "create",
                    "unlink": "delete"}[operation]
            raise FakeError("odoo.exceptions.AccessError",
                            f"You are not allowed to {verb} '{model.description}' "
                            f"({model.name}) records.")

    # -- transactions -----------------------------------------------------------------------
    def call(self, uid: int, model_name: str, method: str, args: List[Any],
             kwargs: Dict[str, Any]) -> Any:
        """``execute_kw``: one transaction; a failure undoes what the call did."""
        with self.lock:
            if method.startswith("_"):
                raise FakeError("odoo.exceptions.AccessError",
                                f"Private methods (such as {method}) cannot be called "
                                "remotely.")
            model = self.model(model_name)
            self._undo = []
            try:
                result = self._dispatch(uid, model, method, list(args), dict(kwargs))
            except FakeError:
                self._rollback()
                raise
            except Exception as exc:
                self._rollback()
                kind = type(exc)
                module = "builtins" if kind.__module__ == "builtins" else kind.__module__
                raise FakeError(f"{module}.{kind.__name__}", str(exc.args[0]) if exc.args
                                else str(exc)) from exc
            finally:
                undo, self._undo = self._undo, None
                del undo
            return result

    def _rollback(self) -> None:
        for model_name, rid, old in reversed(self._undo or []):
            records = self.models[model_name].records
            if old is None:
                records.pop(rid, None)
            else:
                records[rid] = old

    def _remember(self, model: Model, rid: int) -> None:
        if self._undo is not None:
            old = model.records.get(rid)
            self._undo.append((model.name, rid, dict(old) if old is not None else None))

    def savepoint(self) -> List[Tuple[str, int, Optional[Record]]]:
        """Start a nested undo scope; pass the result to :meth:`rollback_to`."""
        return list(self._undo or [])

    def rollback_to(self, mark: List[Tuple[str, int, Optional[Record]]]) -> None:
        """Undo what happened since :meth:`savepoint`."""
        current = self._undo or []
        extra = current[len(mark):]
        for model_name, rid, old in reversed(extra):
            records = self.models[model_name].records
            if old is None:
                records.pop(rid, None)
            else:
                records[rid] = old
        self._undo = list(mark)

    def _dispatch(self, uid: int, model: Model, method: str, args: List[Any],
                  kwargs: Dict[str, Any]) -> Any:
        context = kwargs.pop("context", None) or {}
        if method in model.methods:
            return model.methods[method](self, model, uid, args, dict(kwargs, context=context))
        generic: Dict[str, Callable[..., Any]] = {
            "search": self.m_search, "search_read": self.m_search_read,
            "search_count": self.m_search_count, "read": self.m_read,
            "create": self.m_create, "write": self.m_write, "unlink": self.m_unlink,
            "fields_get": self.m_fields_get, "load": self.m_load, "name_get": self.m_name_get,
        }
        if method not in generic:
            raise FakeError("builtins.AttributeError",
                            f"type object '{model.name}' has no attribute '{method}'")
        return generic[method](uid, model, *args, context=context, **kwargs)

    # -- values -------------------------------------------------------------------------------
    def _convert_in(self, model: Model, name: str, value: Any) -> Any:
        field = model.fields.get(name)
        if field is None:
            raise ValueError(f"Invalid field {name!r} on model {model.name!r}")
        if field.readonly and name in ("id", "display_name", "create_date", "write_date"):
            raise ValueError(f"Invalid field {name!r} on model {model.name!r}")
        if value is None or value is False:
            return False
        if field.type == "selection":
            allowed = [k for k, _ in field.selection or []]
            if value not in allowed:
                raise ValueError(f"Wrong value for {model.name}.{name}: {value!r}")
        elif field.type == "many2one":
            if isinstance(value, (list, tuple)):
                value = value[0]
            if not isinstance(value, int) or value not in self.model(field.relation or "").records:
                raise FakeError("odoo.exceptions.ValidationError",
                                f"The operation cannot be completed: {model.name}.{name} "
                                f"refers to a missing {field.relation} record {value!r}")
        elif field.type == "datetime":
            dt.datetime.strptime(str(value)[:19], _DT)
            value = str(value)[:19]
        elif field.type in ("float", "monetary"):
            value = float(value)
        elif field.type == "integer":
            value = int(value)
        elif field.type in ("char", "text", "html"):
            value = str(value)
        return value

    def _convert_out(self, model: Model, record: Record, name: str) -> Any:
        field = model.fields[name]
        if name == "display_name":
            return model.display_name(record)
        if name == "id":
            return record["id"]
        value = record.get(name, False)
        if field.type == "many2one" and value:
            target = self.model(field.relation or "")
            related = target.records.get(value)
            return [value, target.display_name(related)] if related else False
        if field.type == "one2many":
            return self._one2many(model, record, name)
        if value is None:
            return False
        return value

    def _one2many(self, model: Model, record: Record, name: str) -> List[int]:
        field = model.fields[name]
        target = self.model(field.relation or "")
        inverse = field.default  # the inverse many2one field name
        return sorted(r["id"] for r in target.records.values() if r.get(inverse) == record["id"])

    def _check_record(self, model: Model, record: Record) -> None:
        for name, field in model.fields.items():
            if field.required and record.get(name) in (None, False, ""):
                raise validation(
                    f"The operation cannot be completed:\n- Create/update: a mandatory field "
                    f"is not set.\n- Delete: another model requires the record being deleted."
                    f"\n\nModel: {model.description} ({model.name}), Field: "
                    f"{field.string or name} ({name})")
        for constraint_name, names, message in model.unique:
            key = tuple(record.get(n) for n in names)
            if any(v in (None, False) for v in key):
                continue
            for other in model.records.values():
                if other["id"] != record["id"] and tuple(other.get(n) for n in names) == key:
                    raise validation(message or f"{constraint_name} violated")
        for constraint in model.constraints:
            problem = constraint(record)
            if problem:
                raise validation(problem)

    def now(self) -> str:
        """The current UTC time in Odoo's format."""
        return dt.datetime.now(dt.timezone.utc).strftime(_DT)

    # -- generic methods --------------------------------------------------------------------
    def create_record(self, uid: int, model: Model, vals: Mapping[str, Any]) -> int:
        """Create one record (defaults, conversion, constraints); its id."""
        self.check(uid, model, "create")
        record: Record = {}
        for name, field in model.fields.items():
            if field.default is not None and field.type != "one2many":
                record[name] = field.default() if callable(field.default) else field.default
        for name, value in vals.items():
            record[name] = self._convert_in(model, name, value)
        rid = model.next_id
        model.next_id += 1
        record["id"] = rid
        record["create_date"] = record["write_date"] = self.now()
        if "active" in model.fields and "active" not in vals:
            record["active"] = True
        self._remember(model, rid)
        model.records[rid] = record
        if model.on_create is not None:
            model.on_create(self, record)
        self._check_record(model, record)
        return rid

    def write_records(self, uid: int, model: Model, ids: Iterable[int],
                      vals: Mapping[str, Any]) -> bool:
        """Write ``vals`` on every record of ``ids``."""
        self.check(uid, model, "write")
        converted = {name: self._convert_in(model, name, value) for name, value in vals.items()}
        for rid in ids:
            if rid not in model.records:
                raise FakeError("odoo.exceptions.MissingError",
                                f"Record does not exist or has been deleted.\n(Record: "
                                f"{model.name}({rid},), User: {uid})")
            self._remember(model, rid)
            record = dict(model.records[rid])
            record.update(converted)
            record["write_date"] = self.now()
            model.records[rid] = record
            self._check_record(model, record)
        return True

    def m_create(self, uid: int, model: Model, vals: Any, context: Mapping[str, Any]) -> Any:
        """``create`` with one dict (an id) or a list (the ids, all or nothing)."""
        if isinstance(vals, list):
            return [self.create_record(uid, model, v) for v in vals]
        return self.create_record(uid, model, vals)

    def m_write(self, uid: int, model: Model, ids: List[int], vals: Mapping[str, Any],
                context: Mapping[str, Any]) -> bool:
        """``write``: the same values on every record."""
        return self.write_records(uid, model, ids, vals)

    def m_unlink(self, uid: int, model: Model, ids: List[int],
                 context: Mapping[str, Any]) -> bool:
        """``unlink``."""
        self.check(uid, model, "unlink")
        for rid in ids:
            if rid in model.records:
                self._remember(model, rid)
                del model.records[rid]
        return True

    def search_ids(self, uid: int, model: Model, domain: Sequence[Any],
                   context: Mapping[str, Any], offset: int = 0, limit: Optional[int] = None,
                   order: Optional[str] = None) -> List[int]:
        """The ids matching ``domain`` (ordered by ``order`` or id)."""
        self.check(uid, model, "read")
        domain = list(domain or [])
        mentions_active = any(isinstance(t, (list, tuple)) and t[0] == "active" for t in domain)
        if ("active" in model.fields and not mentions_active
                and context.get("active_test", True)):
            domain = ["&", ("active", "=", True), *domain] if domain else [("active", "=", True)]
        compiled = self._compile(model, domain)
        found = [r for r in model.records.values() if _evaluate(compiled, r)]
        key, reverse = "id", False
        if order:
            first = order.split(",")[0].split()
            key = first[0]
            reverse = len(first) > 1 and first[1].lower() == "desc"
        found.sort(key=lambda r: (r.get(key) in (None, False), r.get(key) or 0, r["id"]),
                   reverse=reverse)
        ids = [r["id"] for r in found]
        return ids[offset:offset + limit if limit else None]

    def m_search(self, uid: int, model: Model, domain: Sequence[Any] = (), offset: int = 0,
                 limit: Optional[int] = None, order: Optional[str] = None, count: bool = False,
                 context: Mapping[str, Any] = {}) -> Any:
        """``search``."""
        ids = self.search_ids(uid, model, domain, context, offset, limit, order)
        return len(ids) if count else ids

    def m_search_count(self, uid: int, model: Model, domain: Sequence[Any] = (),
                       context: Mapping[str, Any] = {}) -> int:
        """``search_count``."""
        return len(self.search_ids(uid, model, domain, context))

    def m_read(self, uid: int, model: Model, ids: List[int], fields: Optional[List[str]] = None,
               context: Mapping[str, Any] = {}, load: str = "_classic_read"
               ) -> List[Record]:
        """``read``: the values of ``fields`` (all when empty), in Odoo's shapes."""
        self.check(uid, model, "read")
        names = list(fields or [n for n in model.fields if n != "display_name"])
        for name in names:
            if name not in model.fields:
                raise ValueError(f"Invalid field {name!r} on model {model.name!r}")
        out = []
        for rid in ids:
            record = model.records.get(rid)
            if record is None:
                continue
            row: Record = {"id": rid}
            for name in names:
                row[name] = self._convert_out(model, record, name)
            out.append(row)
        return out

    def m_search_read(self, uid: int, model: Model, domain: Sequence[Any] = (),
                      fields: Optional[List[str]] = None, offset: int = 0,
                      limit: Optional[int] = None, order: Optional[str] = None,
                      context: Mapping[str, Any] = {}) -> List[Record]:
        """``search_read``."""
        ids = self.search_ids(uid, model, domain, context, offset, limit, order)
        return self.m_read(uid, model, ids, fields, context)

    def m_name_get(self, uid: int, model: Model, ids: List[int],
                   context: Mapping[str, Any] = {}) -> List[List[Any]]:
        """``name_get``."""
        return [[r["id"], model.display_name(r)] for r in
                (model.records[i] for i in ids if i in model.records)]

    def m_fields_get(self, uid: int, model: Model, allfields: Optional[List[str]] = None,
                     attributes: Optional[List[str]] = None,
                     context: Mapping[str, Any] = {}) -> Dict[str, Any]:
        """``fields_get``."""
        wanted = attributes or ["type", "string", "relation", "selection", "required",
                                "readonly"]
        out: Dict[str, Any] = {}
        for name, field in model.fields.items():
            if allfields and name not in allfields:
                continue
            info: Dict[str, Any] = {"type": field.type, "string": field.string or name,
                                    "required": field.required, "readonly": field.readonly}
            if field.relation:
                info["relation"] = field.relation
            if field.selection is not None:
                info["selection"] = [list(s) for s in field.selection]
            out[name] = {k: v for k, v in info.items() if k in wanted}
        return out

    # -- load -----------------------------------------------------------------------------
    def m_load(self, uid: int, model: Model, fields: List[str], data: List[List[Any]],
               context: Mapping[str, Any] = {}) -> Dict[str, Any]:
        """``load``: import rows; ``.id`` names a record to update. Any error: nothing kept,
        ``ids`` False and one message per failing row (``record`` is its index)."""
        tz = zone(str(context.get("tz") or self.user_tz))
        messages: List[Dict[str, Any]] = []
        ids: List[int] = []
        rows: List[Tuple[int, Optional[int], Dict[str, Any]]] = []
        for index, row in enumerate(data):
            dbid: Optional[int] = None
            vals: Dict[str, Any] = {}
            for name, raw in zip(fields, row):
                if name == ".id":
                    dbid = int(raw)
                    if dbid not in model.records:
                        messages.append(self._load_error(index, ".id",
                                        f"Unknown database identifier '{dbid}'"))
                    continue
                try:
                    vals[name.replace("/.id", "")] = self._from_import(model, name, raw, tz)
                except ValueError as exc:
                    messages.append(self._load_error(index, name, str(exc)))
            rows.append((index, dbid, vals))
        mark = self.savepoint()
        try:
            ids = [self._load_one(uid, model, dbid, vals) for _, dbid, vals in rows]
        except FakeError:
            self.rollback_to(mark)
            ids = []
            for index, dbid, vals in rows:  # one by one, to name each failing row
                inner = self.savepoint()
                try:
                    ids.append(self._load_one(uid, model, dbid, vals))
                except FakeError as exc:
                    self.rollback_to(inner)
                    messages.append(self._load_error(index, None, exc.message))
        if any(m["type"] == "error" for m in messages):
            self.rollback_to(mark)
            return {"ids": False, "messages": messages}
        return {"ids": ids, "messages": messages}

    def _load_one(self, uid: int, model: Model, dbid: Optional[int],
                  vals: Dict[str, Any]) -> int:
        if dbid is not None:
            self.write_records(uid, model, [dbid], vals)
            return dbid
        return self.create_record(uid, model, vals)

    @staticmethod
    def _load_error(index: int, field: Optional[str], message: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": "error", "record": index,
                               "rows": {"from": index, "to": index}, "message": message}
        if field:
            out["field"] = field
        return out

    def _from_import(self, model: Model, name: str, raw: Any, tz: dt.tzinfo) -> Any:
        base = name.replace("/.id", "")
        field = model.fields.get(base)
        if field is None:
            raise ValueError(f"Unknown field {name!r}")
        text = "" if raw is None or raw is False else str(raw)
        if text == "":
            return False
        if field.type == "many2one":
            if not name.endswith("/.id"):
                raise ValueError(f"{name}: give the database id as {base}/.id")
            return int(text)
        if field.type == "datetime":
            local = dt.datetime.strptime(text, _DT).replace(tzinfo=tz)
            return local.astimezone(dt.timezone.utc).strftime(_DT)
        if field.type == "selection":
            for key, label in field.selection or []:
                if text in (key, label):
                    return key
            raise ValueError(f"Value {text!r} not found in selection field {base!r}")
        if field.type in ("float", "monetary"):
            return float(text)
        if field.type == "integer":
            return int(text)
        if field.type == "boolean":
            return text.lower() in ("1", "true", "yes")
        return text

    # -- domains ----------------------------------------------------------------------------
    def _compile(self, model: Model, domain: Sequence[Any]) -> Node:
        """The domain as a tree of n-ary ``and``/``or`` nodes with compiled leaves."""
        stack: List[Node] = []
        for item in reversed(list(domain)):
            if item == "!":
                stack.append(("not", [stack.pop()]))
            elif item in ("&", "|"):
                kind = "and" if item == "&" else "or"
                parts: List[Node] = []
                for node in (stack.pop(), stack.pop()):
                    parts.extend(node[1] if node[0] == kind else [node])
                stack.append((kind, parts))
            else:
                stack.append(("leaf", self._leaf(model, item)))
        return ("and", stack)

    def _path_value(self, model: Model, record: Optional[Record], path: str) -> Any:
        if record is None:
            return False
        name, _, rest = path.partition(".")
        if name not in model.fields:
            raise ValueError(f"Invalid field {model.name}.{name} in leaf {path!r}")
        value = record.get(name, False)
        if not rest:
            return value
        field = model.fields[name]
        target = self.model(field.relation or "")
        related = target.records.get(value) if value else None
        return self._path_value(target, related, rest)

    def _leaf(self, model: Model, leaf: Any) -> Callable[[Record], bool]:
        path, op, value = leaf
        self._path_value(model, {}, path.partition(".")[0])  # an unknown field fails now

        def get(record: Record) -> Any:
            return self._path_value(model, record, path)

        if isinstance(value, (list, tuple)) and op in ("=", "!="):
            value = value[0] if value else False
        if op in ("=", "!="):
            def equal(current: Any) -> bool:
                return bool(current == value or (value is False
                                                 and current in (None, False, "")))
            return (lambda r: equal(get(r))) if op == "=" else (lambda r: not equal(get(r)))
        if op in ("in", "not in"):
            try:
                members: Any = set(value)
            except TypeError:
                members = list(value)
            if op == "in":
                return lambda r: bool(get(r) in members)
            return lambda r: bool(get(r) not in members)
        if op in ("ilike", "not ilike", "like", "not like", "=ilike", "=like"):
            pattern = str(value) if op.startswith("=") else f"%{value}%"
            regex = _like_regex(pattern, "ilike" in op)
            negate = bool(op.startswith("not"))

            def like(r: Record) -> bool:
                current = get(r)
                if current in (None, False):
                    return negate
                return bool((regex.fullmatch(str(current)) is None) == negate)
            return like
        if op in ("<", ">", "<=", ">="):
            compare = {"<": operator.lt, ">": operator.gt, "<=": operator.le,
                       ">=": operator.ge}[op]

            def order(r: Record) -> bool:
                current = get(r)
                return current not in (None, False) and bool(compare(current, value))
            return order
        raise ValueError(f"Invalid leaf {leaf!r}")
