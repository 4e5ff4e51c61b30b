"""An in-process stand-in for an Odoo ``env``, over :class:`~smskit_odoo.testing.odoo.FakeOdoo`.

``EnvAdapter(FakeEnv(fake), call_kw=fake_call_kw)`` runs smskit's Odoo code the way it runs
inside an addon: errors are raised as exception classes named like Odoo's
(``odoo.exceptions.ValidationError``), a missing model is a ``KeyError`` from ``env[model]``,
and ``env.cr`` has ``savepoint()``, ``commit()``, ``rollback()`` and ``execute()``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from smskit_odoo.testing.odoo import ADMIN_UID, FakeOdoo
from smskit_odoo.testing.orm import FakeError

__all__ = ["FakeCursor", "FakeEnv", "FakeRecords", "fake_call_kw"]

_CLASSES: Dict[str, type] = {}


def _odoo_exception(error: FakeError) -> Exception:
    """An instance of a class whose module and name are Odoo's (``odoo.exceptions``)."""
    module, _, name = error.name.rpartition(".")
    key = error.name
    if key not in _CLASSES:
        if module == "builtins":
            import builtins

            _CLASSES[key] = getattr(builtins, name, Exception)
        else:
            _CLASSES[key] = type(name, (Exception,), {"__module__": module or "odoo"})
    return _CLASSES[key](error.message)  # type: ignore[no-any-return]


class FakeCallbacks:
    """``cr.postcommit`` / ``cr.postrollback`` as Odoo's ``tools.Callbacks``: functions run in
    order once, then forgotten, with a ``data`` dict cleared along with them."""

    def __init__(self) -> None:
        self._funcs: List[Callable[[], Any]] = []
        self.data: Dict[str, Any] = {}

    def add(self, func: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``func`` later (usable as a decorator, as Odoo's)."""
        self._funcs.append(func)
        return func

    def run(self) -> None:
        """Run the functions added, then forget them and ``data``."""
        while self._funcs:
            self._funcs.pop(0)()
        self.clear()

    def clear(self) -> None:
        """Forget the functions and ``data``."""
        self._funcs.clear()
        self.data.clear()


class FakeCursor:
    """``env.cr``: savepoints are no-ops (each fake call is atomic); commits are counted, and
    run the post-commit callbacks (a rollback the post-rollback ones), as Odoo's cursor."""

    def __init__(self, dbname: str = "smskit") -> None:
        self.dbname = dbname
        self.commits = 0
        self.rollbacks = 0
        self.executed: List[Tuple[str, Any]] = []
        self.postcommit = FakeCallbacks()
        self.postrollback = FakeCallbacks()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint (the fake call already undoes itself on error)."""
        yield

    def commit(self) -> None:
        """Count a commit; run the post-commit callbacks."""
        self.commits += 1
        self.postrollback.clear()
        self.postcommit.run()

    def rollback(self) -> None:
        """Count a rollback (each fake call is already atomic: nothing to undo); run the
        post-rollback callbacks."""
        self.rollbacks += 1
        self.postcommit.clear()
        self.postrollback.run()

    def execute(self, query: str, params: Any = None) -> None:
        """Record a raw query (the advisory lock)."""
        self.executed.append((query, params))


class FakeRecords:
    """``env[model]`` (optionally ``with_context``)."""

    def __init__(self, env: FakeEnv, model: str, context: Dict[str, Any]) -> None:
        self.env = env
        self.model = model
        self.context = context

    def with_context(self, **context: Any) -> FakeRecords:
        """The same model with more context."""
        return FakeRecords(self.env, self.model, dict(self.context, **context))

    def sudo(self) -> FakeRecords:
        """The same model (the fake checks no rights for the superuser's calls)."""
        return FakeRecords(FakeEnv(self.env.fake, 1, self.env.cr), self.model, self.context)

    def __getattr__(self, method: str) -> Any:
        """``env[model].search_read(...)``: any model method, called like ``call_kw``."""
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            return fake_call_kw(self, method, list(args), kwargs)

        return call


class FakeEnv:
    """``env``: ``env[model]``, ``env.uid``, ``env.cr``."""

    def __init__(self, fake: FakeOdoo, uid: int = ADMIN_UID,
                 cr: Optional[FakeCursor] = None) -> None:
        self.fake = fake
        self.uid = uid
        self.cr = cr or FakeCursor(fake.database)

    def __getitem__(self, model: str) -> FakeRecords:
        if model not in self.fake.orm.models:
            raise KeyError(model)
        return FakeRecords(self, model, {})


def fake_call_kw(records: FakeRecords, method: str, args: List[Any],
                 kwargs: Dict[str, Any]) -> Any:
    """What ``odoo.api.call_kw`` does, on the fake, raising Odoo-named exceptions."""
    env = records.env
    if env.fake.down:
        raise _odoo_exception(FakeError("psycopg2.OperationalError",
                                        "server closed the connection unexpectedly"))
    call = dict(kwargs)
    if records.context:
        call["context"] = dict(call.get("context") or {}, **records.context)
    try:
        return env.fake.execute_kw(env.uid, records.model, method, args, call)
    except FakeError as exc:
        raise _odoo_exception(exc) from None
