"""One small interface to Odoo, two implementations: over JSON-RPC and over an addon's ``env``.

Everything smskit does in Odoo goes through :meth:`OdooAdapter.execute`, which has the
semantics of Odoo's own ``execute_kw``: ``execute("res.partner", "search_read", domain,
fields=["name"])``; record methods take the ids first (``execute("res.partner", "write", [7],
{"name": "Ana"})``). The store, the partner directory and the ChatRoom router are written once
against it, so the code tested over RPC is the code that runs inside an addon.

* :class:`RpcAdapter` talks to a running Odoo with odoorpc; every :meth:`execute` is one HTTP
  round trip, counted in :attr:`RpcAdapter.round_trips`.
* :class:`EnvAdapter` calls the ORM of the Odoo process it runs in (``odoo.api.call_kw``, the
  function the RPC endpoint itself calls), so results have the same JSON shapes.

Failures become :mod:`smskit_odoo.errors` classes: a refused connection or a proxy error is
:class:`~smskit_odoo.errors.OdooUnavailableError`; an Odoo error object keeps its ``name``
(``odoo.exceptions.AccessError``...).
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import threading
import urllib.error
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
)
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.config import Secret
from smskit.errors import ConfigurationError
from smskit_odoo.errors import (
    OdooAccessError,
    OdooError,
    OdooMissingModelError,
    OdooRpcError,
    OdooTransientError,
    OdooUnavailableError,
    OdooValidationError,
)

__all__ = [
    "EnvAdapter",
    "OdooAdapter",
    "OdooUrl",
    "RpcAdapter",
    "fresh_transaction",
    "from_odoo_datetime",
    "rpc_error",
    "to_odoo_datetime",
]

log = logging.getLogger(__name__)

ODOO_DATETIME = "%Y-%m-%d %H:%M:%S"
ODOO_DATE = "%Y-%m-%d"

#: Methods that change data: :class:`EnvAdapter` commits after them when asked to.
MUTATING = frozenset({"create", "write", "unlink", "load", "message_post", "new_message"})
#: Methods that commit by themselves (acrux): never wrapped in a savepoint.
SELF_COMMITTING = frozenset({"new_message"})

_ACCESS = ("AccessError", "AccessDenied")
#: PostgreSQL errors a concurrent transaction causes (psycopg2's ``pgcode``): serialization
#: failure, deadlock, lock not available. A unique violation is one too when ChatRoom's
#: ``new_message`` raises it (a conversation another transaction created meanwhile: afresh,
#: it is found); from any other call it is Odoo refusing the record.
TRANSIENT_PGCODES = frozenset({"40001", "40P01", "55P03"})
UNIQUE_VIOLATION = "23505"
#: The same, as the exception class names an Odoo error object carries over RPC.
_TRANSIENT_NAMES = ("SerializationFailure", "DeadlockDetected", "LockNotAvailable",
                    "TransactionRollbackError")
#: What ``load`` (which swallows database errors into its messages) says for them.
TRANSIENT_TEXTS = ("could not serialize access", "deadlock detected",
                   "could not obtain lock", "canceling statement due to lock timeout")
_VALIDATION = ("ValidationError", "UserError", "IntegrityError", "UniqueViolation",
               "NotNullViolation", "MissingError", "ValueError")


def to_odoo_datetime(value: dt.datetime) -> str:
    """An aware datetime as Odoo stores it: naive UTC, ``YYYY-MM-DD HH:MM:SS``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(f"naive datetime {value!r}: smskit writes UTC to Odoo")
    return value.astimezone(dt.timezone.utc).strftime(ODOO_DATETIME)


def from_odoo_datetime(value: Any) -> Optional[dt.datetime]:
    """Odoo's ``YYYY-MM-DD HH:MM:SS`` (UTC) as an aware datetime; ``False``/empty is ``None``."""
    if not value:
        return None
    text = str(value)[:19]
    return dt.datetime.strptime(text, ODOO_DATETIME).replace(tzinfo=dt.timezone.utc)


@runtime_checkable
class OdooAdapter(Protocol):
    """How smskit calls Odoo. ``uid`` is the user the calls run as."""

    @property
    def uid(self) -> int:
        """The Odoo user id the calls run as."""
        ...

    @property
    def round_trips(self) -> int:
        """Calls made so far that crossed the network (0 in process)."""
        ...

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of ``model`` like Odoo's ``execute_kw`` and return its JSON result."""
        ...

    def lock(self, key: str) -> Any:
        """A context manager serialising work on ``key`` (a phone number) where possible."""
        ...

    def refresh(self) -> bool:
        """Make the next call see everything committed so far (a fresh transaction), where the
        adapter may; ``False`` when it may not (a caller's transaction it must not end)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def fresh_transaction(adapter: OdooAdapter) -> bool:
    """``adapter.refresh()``, for an adapter written before :meth:`OdooAdapter.refresh`
    existed too (it cannot start a fresh transaction: ``False``)."""
    refresh = getattr(adapter, "refresh", None)
    return bool(refresh()) if callable(refresh) else False


# -- URLs ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class OdooUrl:
    """``odoo://user:password@host:8069/db`` (``odoo+ssl://`` for HTTPS), parsed.

    Query parameters: ``timeout`` (seconds, default 30) and any extra option, kept in
    ``options`` (``sidecar=...``).
    """

    host: str
    port: int
    database: str
    user: str
    password: Secret
    ssl: bool = False
    timeout: float = 30.0
    options: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, url: str) -> OdooUrl:
        """Parse an ``odoo://`` URL; a missing part raises :class:`ConfigurationError`."""
        shown = _redact(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("odoo", "odoo+ssl", "odoo+jsonrpc", "odoo+jsonrpc+ssl"):
            raise ConfigurationError(f"not an Odoo URL (expected odoo://...): {shown!r}")
        ssl = scheme.endswith("+ssl")
        if not parts.hostname:
            raise ConfigurationError(f"Odoo URL {shown!r} names no host")
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise ConfigurationError(f"Odoo URL {shown!r} must name one database: "
                                     "odoo://user:password@host:8069/database")
        if not parts.username or parts.password is None:
            raise ConfigurationError(f"Odoo URL {shown!r} needs a user and a password")
        try:
            port = parts.port or (443 if ssl else 8069)
        except ValueError as exc:
            raise ConfigurationError(f"Odoo URL {shown!r} has an invalid port") from exc
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            timeout = float(options.pop("timeout", "30"))
        except ValueError as exc:
            raise ConfigurationError(f"Odoo URL {shown!r}: timeout must be seconds") from exc
        return cls(host=parts.hostname, port=port, database=database,
                   user=unquote(parts.username), password=Secret(unquote(parts.password)),
                   ssl=ssl, timeout=timeout, options=options)

    def __repr__(self) -> str:
        scheme = "odoo+ssl" if self.ssl else "odoo"
        return f"OdooUrl('{scheme}://{self.user}:********@{self.host}:{self.port}/{self.database}')"


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.partition(":")[0]
    return f"{scheme}://{user}:********@{host}"


# -- errors -------------------------------------------------------------------------------


def rpc_error(name: str, message: str, model: Optional[str], method: Optional[str],
              arguments: Sequence[Any] = ()) -> OdooError:
    """The smskit error for an Odoo error object named ``name`` with ``message``."""
    where = f"{model}.{method}" if model and method else (model or method or "odoo")
    short = name.rsplit(".", 1)[-1] or "error"
    text = f"Odoo refused {where}: {short}: {message}"
    kwargs: Dict[str, Any] = dict(name=name, odoo_message=message, model=model, method=method,
                                  arguments=arguments)
    if short in _ACCESS:
        return OdooAccessError(text, **kwargs)
    if short in _TRANSIENT_NAMES:
        return OdooTransientError(text)
    if short == "UserError" and "doesn't exist" in message and model and model in message:
        return OdooMissingModelError(f"Odoo has no model {model!r} (is its module installed?): "
                                     f"{message}", **kwargs)
    if short in _VALIDATION:
        return OdooValidationError(text, **kwargs)
    return OdooRpcError(text, **kwargs)


def _unavailable(exc: BaseException, where: str) -> OdooUnavailableError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code}"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return OdooUnavailableError(f"Odoo is unreachable ({where}): {reason}")


_NETWORK_ERRORS: Tuple[Type[BaseException], ...] = (OSError, http.client.HTTPException,
                                                    ValueError)


# -- over JSON-RPC ----------------------------------------------------------------------------


class RpcAdapter:
    """:class:`OdooAdapter` over JSON-RPC with odoorpc (``pip install 'smskit-sdk[odoo]'``).

    Connects and logs in on the first call (three round trips: version, login, user
    context), and again after a failure, so a restarted Odoo is picked up.
    """

    def __init__(self, url: OdooUrl, *, opener: Any = None) -> None:
        self.url = url
        self._opener = opener
        self._odoo: Any = None
        self._uid = 0
        self._round_trips = 0
        self._lock = threading.RLock()
        self._locks: Dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"RpcAdapter({self.url!r}, round_trips={self._round_trips})"

    @property
    def uid(self) -> int:
        """The logged-in user's id (connects first if needed)."""
        self._connect()
        return self._uid

    @property
    def round_trips(self) -> int:
        """HTTP requests made to Odoo so far (login included)."""
        return self._round_trips

    def _connect(self) -> Any:
        with self._lock:
            if self._odoo is not None:
                return self._odoo
            try:
                import odoorpc
            except ImportError as exc:  # pragma: no cover - the extra is part of the tests
                raise ConfigurationError(
                    "talking to Odoo over RPC needs odoorpc: pip install 'smskit-sdk[odoo]'"
                ) from exc
            url = self.url
            try:
                self._round_trips += 1
                odoo = odoorpc.ODOO(url.host, protocol="jsonrpc+ssl" if url.ssl else "jsonrpc",
                                    port=url.port, timeout=url.timeout, opener=self._opener)
                self._round_trips += 2
                odoo.login(url.database, url.user, url.password.reveal())
            except odoorpc.error.RPCError as exc:
                raise self._translate(exc, None, "login") from None
            except _NETWORK_ERRORS as exc:
                raise _unavailable(exc, f"connecting to {url.host}:{url.port}") from None
            self._odoo = odoo
            self._uid = int(odoo.env.uid)
            return odoo

    def _translate(self, exc: Any, model: Optional[str], method: str) -> OdooError:
        info = exc.info if isinstance(getattr(exc, "info", None), dict) else {}
        data = info.get("data") or {}
        if not data and method == "login":
            return OdooAccessError(
                f"Odoo refused the login of user {self.url.user!r} to database "
                f"{self.url.database!r}: wrong login or password", name="AccessDenied",
                odoo_message=str(exc), method="login")
        name = str(data.get("name") or "")
        message = str(data.get("message") or exc)
        return rpc_error(name, message, model, method, data.get("arguments") or ())

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """One ``execute_kw`` round trip."""
        odoo = self._connect()
        import odoorpc

        self._round_trips += 1
        try:
            return odoo.execute_kw(model, method, list(args), kwargs)
        except odoorpc.error.RPCError as exc:
            error = self._translate(exc, model, method)
            if getattr(error, "name", "").endswith("SessionExpiredException") or (
                    isinstance(error, OdooAccessError) and error.name.endswith("AccessDenied")):
                self._reset()  # a changed password or a restarted server: log in again next time
            raise error from None
        except _NETWORK_ERRORS as exc:
            self._reset()
            raise _unavailable(exc, f"calling {model}.{method}") from None

    def _reset(self) -> None:
        with self._lock:
            self._odoo = None

    def lock(self, key: str) -> Any:
        """A per-key lock of this process (RPC cannot lock inside Odoo's transaction)."""
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def refresh(self) -> bool:
        """Always ``True``: every RPC call is its own transaction in Odoo."""
        return True

    def close(self) -> None:
        """Forget the session (odoorpc holds no socket between calls)."""
        self._reset()


# -- in process -------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """What the RPC layer would send: datetimes as Odoo strings, tuples as lists."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime(ODOO_DATETIME)
    if isinstance(value, dt.date):
        return value.strftime(ODOO_DATE)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _default_call_kw() -> Callable[[Any, str, List[Any], Dict[str, Any]], Any]:
    try:
        from odoo.api import call_kw  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigurationError("EnvAdapter runs inside an Odoo process (odoo.api.call_kw); "
                                 "outside Odoo use RpcAdapter") from exc
    return call_kw  # type: ignore[no-any-return]


class _AdvisoryLock:
    """``pg_advisory_xact_lock`` on the cursor: held until the transaction ends."""

    def __init__(self, cr: Any, key: str) -> None:
        self._cr = cr
        self._key = key

    def __enter__(self) -> None:
        self._cr.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"smskit:{self._key}"])

    def __exit__(self, *exc: object) -> None:
        """The lock goes with the transaction."""


class _CommittingLock:
    """A session-level ``pg_advisory_lock`` for an adapter that may commit: taken, then a
    fresh transaction begins (under REPEATABLE READ a snapshot taken before the wait would not
    see what the previous holder committed); on leaving, the work is committed (rolled back
    after an error) *before* the lock is released, so the next holder sees it."""

    def __init__(self, cr: Any, key: str) -> None:
        self._cr = cr
        self._key = f"smskit:{key}"

    def __enter__(self) -> None:
        self._cr.execute("SELECT pg_advisory_lock(hashtext(%s))", [self._key])
        self._cr.commit()

    def __exit__(self, kind: Optional[type], *exc: object) -> None:
        try:
            if kind is None:
                self._cr.commit()
            else:
                self._cr.rollback()
        finally:
            # a session lock outlives the transaction: always released (with a broken
            # connection it goes with the connection)
            self._cr.execute("SELECT pg_advisory_unlock(hashtext(%s))", [self._key])


def _pgcode(exc: BaseException) -> Optional[str]:
    code = getattr(exc, "pgcode", None)
    return str(code) if code else None


class EnvAdapter:
    """:class:`OdooAdapter` over the ORM of the running Odoo (inside an addon).

    ``env`` is an ``odoo.api.Environment``; it may be replaced between uses (``adapter.env =
    request_env``: an adapter kept across requests is bound to each request's cursor). Each
    call runs in a savepoint (a refused record does not poison the transaction) except acrux's
    ``new_message``, which commits by itself.

    With ``autocommit`` the transaction belongs to smskit: it is committed after each call that
    changed data, so that what smskit wrote stays written even if the cron or request fails
    later (the outbound row must exist before Kolmeya is called, and stay); after a failed call
    it is rolled back, so the cursor stays usable and the next call sees a fresh snapshot;
    :meth:`refresh` starts a fresh transaction; and :meth:`lock` commits around the locked
    work. A concurrent transaction getting in the way (serialization failure, deadlock, lock
    not available, a unique violation) raises :class:`~smskit_odoo.errors.OdooTransientError`:
    the caller retries in a fresh transaction (the session's replay of pending writes does).
    """

    def __init__(self, env: Any, *, autocommit: bool = False,
                 call_kw: Optional[Callable[[Any, str, List[Any], Dict[str, Any]], Any]] = None
                 ) -> None:
        self.env = env
        self.autocommit = autocommit
        self._call_kw = call_kw or _default_call_kw()

    def __repr__(self) -> str:
        return f"EnvAdapter(autocommit={self.autocommit})"

    @property
    def uid(self) -> int:
        """The environment's user id."""
        return int(self.env.uid)

    @property
    def round_trips(self) -> int:
        """Always 0: nothing crosses the network."""
        return 0

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the ORM the way the RPC endpoint does (private methods refused likewise)."""
        return self._calls(model, method, [(list(args), kwargs)])[0]

    def write_many(self, model: str, rows: Sequence[Tuple[int, Mapping[str, Any]]], *,
                   context: Optional[Mapping[str, Any]] = None) -> None:
        """``write`` each ``(id, values)`` of ``rows`` (values as ``write`` takes them), in
        one savepoint and, with ``autocommit``, one commit: what ``load`` does with a ``.id``
        column, without its look-up of each record one by one (one ``search`` for all of
        them here) and its conversion of every cell from text. A record gone, or any row
        Odoo refuses, raises (:class:`~smskit_odoo.errors.OdooValidationError`) and nothing
        is written: ``load`` then tells which rows."""
        if not rows:
            return
        ids = sorted({int(oid) for oid, _ in rows})
        found = set(self.execute(model, "search", [("id", "in", ids)],
                                 context=dict(context or {})))
        gone = [oid for oid in ids if oid not in found]
        if gone:
            raise rpc_error("odoo.exceptions.MissingError",
                            f"{model} records {gone} no longer exist", model, "write")
        self._calls(model, "write", [([[int(oid)], dict(values)],
                                      {"context": dict(context or {})})
                                     for oid, values in rows])

    def _calls(self, model: str, method: str,
               calls: Sequence[Tuple[List[Any], Dict[str, Any]]]) -> List[Any]:
        """``method`` of ``model`` once per ``(args, kwargs)`` in ``calls``, all in one
        savepoint (one commit after them with ``autocommit``); their JSON results."""
        if method.startswith("_"):
            raise rpc_error("odoo.exceptions.AccessError",
                            f"Private methods (such as {method}) cannot be called remotely.",
                            model, method)
        # call_kw gives the method the context it is passed (or none), as the RPC endpoint
        # does: the environment's own (its language, say) is passed with ours on top
        base = dict(getattr(self.env, "context", None) or {})
        prepared = []
        for args, kwargs in calls:
            kwargs = dict(kwargs)
            kwargs["context"] = dict(base, **(kwargs.pop("context", None) or {}))
            prepared.append((list(args), kwargs))
        try:
            records = self.env[model]
        except KeyError:
            raise rpc_error("odoo.exceptions.UserError", f"Object {model} doesn't exist",
                            model, method) from None
        cr = self.env.cr
        committing = False
        try:
            if method in SELF_COMMITTING:
                results = [self._call_kw(records, method, args, kwargs)
                           for args, kwargs in prepared]
            else:
                with cr.savepoint():
                    results = [self._call_kw(records, method, args, kwargs)
                               for args, kwargs in prepared]
            if self.autocommit and method in MUTATING:
                # the commit flushes what the call left pending (new_message's last write):
                # a serialization failure may show only here
                committing = True
                cr.commit()
        except Exception as exc:  # translated: every Odoo error is one of ours from here on
            error = self._translate(exc, model, method)
            if self.autocommit and (committing or method in SELF_COMMITTING
                                    or isinstance(error, (OdooTransientError,
                                                          OdooUnavailableError))):
                # an aborted transaction (no savepoint around it), or a stale snapshot that
                # would fail the retry again: a fresh one (ours: nothing else is pending)
                self._rollback()
            raise error from exc
        return [_jsonable(result) for result in results]

    def _rollback(self) -> None:
        try:
            self.env.cr.rollback()
        except Exception:  # a dead connection: the next call says so
            log.debug("rollback after a failed call failed", exc_info=True)

    @staticmethod
    def _translate(exc: Exception, model: str, method: str) -> Exception:
        kind = type(exc)
        name = f"{kind.__module__}.{kind.__name__}"
        code = _pgcode(exc)
        first = str(exc.args[0]) if exc.args else str(exc)
        if code in TRANSIENT_PGCODES or (code == UNIQUE_VIOLATION and method in SELF_COMMITTING):
            return OdooTransientError(f"{model}.{method} met a concurrent transaction: "
                                      f"{first.strip()}")
        if kind.__module__.startswith("psycopg2") and kind.__name__ in (
                "OperationalError", "InterfaceError"):
            return OdooUnavailableError(f"the Odoo database failed ({model}.{method}): {exc}")
        return rpc_error(name, first, model, method, exc.args)

    def lock(self, key: str) -> Any:
        """A PostgreSQL advisory lock on ``key``: with ``autocommit`` a session lock with a
        fresh transaction inside and a commit before its release (see :class:`EnvAdapter`);
        otherwise held to the end of the caller's transaction."""
        if self.autocommit:
            return _CommittingLock(self.env.cr, key)
        return _AdvisoryLock(self.env.cr, key)

    def refresh(self) -> bool:
        """With ``autocommit``: commit, so the next call runs in a fresh transaction and sees
        what other transactions committed; without it ``False`` (the caller's transaction)."""
        if not self.autocommit:
            return False
        self.env.cr.commit()
        return True

    def close(self) -> None:
        """Nothing to release: the environment belongs to Odoo."""
