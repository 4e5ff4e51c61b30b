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
    OdooMissingModelError,
    OdooRpcError,
    OdooUnavailableError,
    OdooValidationError,
)

__all__ = [
    "EnvAdapter",
    "OdooAdapter",
    "OdooUrl",
    "RpcAdapter",
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

    def close(self) -> None:
        """Release the connection."""
        ...


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
              arguments: Sequence[Any] = ()) -> OdooRpcError:
    """The smskit error for an Odoo error object named ``name`` with ``message``."""
    where = f"{model}.{method}" if model and method else (model or method or "odoo")
    short = name.rsplit(".", 1)[-1] or "error"
    text = f"Odoo refused {where}: {short}: {message}"
    kwargs: Dict[str, Any] = dict(name=name, odoo_message=message, model=model, method=method,
                                  arguments=arguments)
    if short in _ACCESS:
        return OdooAccessError(text, **kwargs)
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

    def _translate(self, exc: Any, model: Optional[str], method: str) -> OdooRpcError:
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
            if error.name.endswith("SessionExpiredException") or (
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


class EnvAdapter:
    """:class:`OdooAdapter` over the ORM of the running Odoo (inside an addon).

    ``env`` is an ``odoo.api.Environment``. Each call runs in a savepoint (a refused record
    does not poison the transaction) except acrux's ``new_message``, which commits by itself.
    With ``autocommit`` the transaction is committed after each call that changed data, so
    that what smskit wrote stays written even if the cron or request fails later (the
    outbound row must exist before Kolmeya is called, and stay).
    """

    def __init__(self, env: Any, *, autocommit: bool = False,
                 call_kw: Optional[Callable[[Any, str, List[Any], Dict[str, Any]], Any]] = None
                 ) -> None:
        self.env = env
        self.autocommit = autocommit
        self._call_kw = call_kw or _default_call_kw()

    def __repr__(self) -> str:
        return f"EnvAdapter(uid={self.uid}, autocommit={self.autocommit})"

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
        if method.startswith("_"):
            raise rpc_error("odoo.exceptions.AccessError",
                            f"Private methods (such as {method}) cannot be called remotely.",
                            model, method)
        context = kwargs.pop("context", None)
        try:
            records = self.env[model]
        except KeyError:
            raise rpc_error("odoo.exceptions.UserError", f"Object {model} doesn't exist",
                            model, method) from None
        if context:
            records = records.with_context(**context)
        try:
            if method in SELF_COMMITTING:
                result = self._call_kw(records, method, list(args), dict(kwargs))
            else:
                with self.env.cr.savepoint():
                    result = self._call_kw(records, method, list(args), dict(kwargs))
        except Exception as exc:  # translated: every Odoo error is one of ours from here on
            raise self._translate(exc, model, method) from exc
        if self.autocommit and method in MUTATING:
            self.env.cr.commit()
        return _jsonable(result)

    @staticmethod
    def _translate(exc: Exception, model: str, method: str) -> Exception:
        kind = type(exc)
        name = f"{kind.__module__}.{kind.__name__}"
        if kind.__module__.startswith("psycopg2") and kind.__name__ in (
                "OperationalError", "InterfaceError"):
            return OdooUnavailableError(f"the Odoo database failed ({model}.{method}): {exc}")
        message = str(exc.args[0]) if exc.args else str(exc)
        return rpc_error(name, message, model, method, exc.args)

    def lock(self, key: str) -> Any:
        """A PostgreSQL advisory lock held to the end of the current transaction."""
        return _AdvisoryLock(self.env.cr, key)

    def close(self) -> None:
        """Nothing to release: the environment belongs to Odoo."""
