"""The one interface to Odoo: URLs, odoorpc over the fake's JSON-RPC, the in-process env,
error translation and round-trip counting; and the fake server's own faithfulness."""

from __future__ import annotations

from typing import Any, Dict

import httpx
import pytest

from odoo_fake import OdooServer, fake_odoo, odoo_server  # noqa: F401
from smskit.errors import ConfigurationError
from smskit_odoo.adapter import (
    EnvAdapter,
    OdooAdapter,
    OdooUrl,
    RpcAdapter,
    from_odoo_datetime,
    to_odoo_datetime,
)
from smskit_odoo.errors import (
    OdooAccessError,
    OdooMissingModelError,
    OdooRpcError,
    OdooTransientError,
    OdooUnavailableError,
    OdooValidationError,
)
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeCursor, FakeEnv, fake_call_kw


def test_odoo_urls() -> None:
    url = OdooUrl.parse("odoo://bot:s%40cret@odoo.example.com:8070/prod?timeout=5&sidecar=x")
    assert (url.host, url.port, url.database, url.user, url.password.reveal(), url.ssl,
            url.timeout, dict(url.options)) == (
        "odoo.example.com", 8070, "prod", "bot", "s@cret", False, 5.0, {"sidecar": "x"})
    assert "s@cret" not in repr(url) and "s%40cret" not in repr(url)
    assert OdooUrl.parse("odoo+ssl://a:b@h/db").port == 443
    assert OdooUrl.parse("odoo://a:b@h/db").port == 8069
    for bad, why in [("postgresql://a:b@h/db", "not an Odoo URL"),
                     ("odoo://a:b@h/", "one database"), ("odoo://h:8069/db", "user and"),
                     ("odoo://a:b@h:x/db", "invalid port"),
                     ("odoo://a:b@h/db?timeout=soon", "timeout")]:
        with pytest.raises(ConfigurationError, match=why) as caught:
            OdooUrl.parse(bad)
        assert ":b@" not in str(caught.value)


def test_datetimes() -> None:
    import datetime as dt

    aware = dt.datetime(2024, 5, 10, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    assert to_odoo_datetime(aware) == "2024-05-11 00:00:00"
    assert from_odoo_datetime("2024-05-11 00:00:00") == aware
    assert from_odoo_datetime(False) is None
    with pytest.raises(ConfigurationError, match="naive"):
        to_odoo_datetime(dt.datetime(2024, 5, 10))


def test_rpc_calls_are_counted_like_the_server_counts_them(
        odoo_server: OdooServer, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    adapter = RpcAdapter(OdooUrl.parse(odoo_server.url()))
    assert isinstance(adapter, OdooAdapter)
    ids = adapter.execute("res.partner", "create", [{"name": "A"}, {"name": "B"}])
    rows = adapter.execute("res.partner", "search_read", [("id", "in", ids)], fields=["name"],
                           order="id")
    assert [r["name"] for r in rows] == ["A", "B"]
    assert adapter.execute("res.partner", "write", ids, {"comment": "x"}) is True
    assert adapter.round_trips == len(fake_odoo.requests) == 6  # 3 to log in, 3 calls
    assert [r.get("service") for r in fake_odoo.requests[:3]] == [None, "common", "object"]
    assert fake_odoo.requests[0]["path"] == "/web/webclient/version_info"
    assert adapter.uid == 2


@pytest.mark.parametrize(("call", "error", "name"), [
    (("sms.message", "create", {"phone": "x", "body": "y", "state": "nope"}),
     OdooValidationError, "builtins.ValueError"),
    (("sms.message", "create", {"body": "no phone"}), OdooValidationError,
     "odoo.exceptions.ValidationError"),
    (("no.such.model", "search", []), OdooMissingModelError, "odoo.exceptions.UserError"),
    (("res.partner", "frobnicate"), OdooRpcError, "builtins.AttributeError"),
    (("res.partner", "_private"), OdooAccessError, "odoo.exceptions.AccessError"),
])
def test_odoo_error_objects_become_smskit_errors(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, call: Any, error: type,  # noqa: F811
        name: str) -> None:
    for adapter in (RpcAdapter(OdooUrl.parse(odoo_server.url())),
                    EnvAdapter(FakeEnv(fake_odoo), call_kw=fake_call_kw)):
        with pytest.raises(error) as caught:
            adapter.execute(*call)
        assert caught.value.name == name  # type: ignore[attr-defined]
        assert call[0] in str(caught.value)


def test_access_error_and_refused_login(odoo_server: OdooServer,  # noqa: F811
                                        fake_odoo: FakeOdoo) -> None:  # noqa: F811
    uid = fake_odoo.add_user("reader", "pw")
    fake_odoo.deny(uid, "res.partner", "write")
    reader = RpcAdapter(OdooUrl.parse(odoo_server.url(user="reader", password="pw")))
    with pytest.raises(OdooAccessError, match="not allowed to modify 'Contact'"):
        reader.execute("res.partner", "write", [1], {"name": "x"})
    assert fake_odoo.records("res.partner")[0]["name"] == "OdooBot"  # nothing written
    with pytest.raises(OdooAccessError, match="wrong login or password"):
        RpcAdapter(OdooUrl.parse(odoo_server.url(password="nope"))).execute(
            "res.partner", "search", [])


def test_unreachable_and_recovering(odoo_server: OdooServer,  # noqa: F811
                                    fake_odoo: FakeOdoo) -> None:  # noqa: F811
    adapter = RpcAdapter(OdooUrl.parse(odoo_server.url()))
    adapter.execute("res.partner", "search", [])
    fake_odoo.down = True
    with pytest.raises(OdooUnavailableError, match="HTTP 503"):
        adapter.execute("res.partner", "search", [])
    fake_odoo.down = False
    assert adapter.execute("res.partner", "search_count", []) == 3  # logged in again


def test_a_failed_call_changes_nothing(odoo_server: OdooServer,  # noqa: F811
                                       fake_odoo: FakeOdoo) -> None:  # noqa: F811
    adapter = RpcAdapter(OdooUrl.parse(odoo_server.url()))
    with pytest.raises(OdooValidationError):
        adapter.execute("res.partner", "create", [{"name": "ok"}, {"phone": "no name"}])
    assert len(fake_odoo.records("res.partner")) == 3


def test_env_adapter_savepoints_commits_and_locks(fake_odoo: FakeOdoo) -> None:  # noqa: F811
    env = FakeEnv(fake_odoo)
    adapter = EnvAdapter(env, autocommit=True, call_kw=fake_call_kw)
    assert adapter.uid == 2 and adapter.round_trips == 0
    [pid] = adapter.execute("res.partner", "create", [{"name": "A"}])
    assert env.cr.commits == 1
    adapter.execute("res.partner", "search_read", [("id", "=", pid)], fields=["create_date"])
    assert env.cr.commits == 1  # reads do not commit
    rows = adapter.execute("res.partner", "read", [pid], ["create_date"])
    assert isinstance(rows[0]["create_date"], str)
    commits = env.cr.commits
    with adapter.lock("+5511987654321"):
        # a session lock, then a fresh transaction (a snapshot older than the wait would not
        # see what the previous holder committed)
        assert [q for q, _ in env.cr.executed] == ["SELECT pg_advisory_lock(hashtext(%s))"]
        assert env.cr.commits == commits + 1
    # committed before the release: the next holder sees what was done under the lock
    assert env.cr.commits == commits + 2
    assert env.cr.executed[-1][0] == "SELECT pg_advisory_unlock(hashtext(%s))"
    with pytest.raises(RuntimeError), adapter.lock("+5511987654321"):
        raise RuntimeError("boom")
    assert env.cr.rollbacks == 1 and "unlock" in env.cr.executed[-1][0]
    own = EnvAdapter(FakeEnv(fake_odoo), call_kw=fake_call_kw)  # the caller's transaction
    with own.lock("+5511987654321"):
        pass
    assert "pg_advisory_xact_lock" in own.env.cr.executed[0][0] and own.env.cr.commits == 0
    assert adapter.refresh() and not own.refresh()
    fake_odoo.down = True
    with pytest.raises(OdooUnavailableError):
        adapter.execute("res.partner", "search", [])
    with pytest.raises(ConfigurationError, match="inside an Odoo process"):
        EnvAdapter(env)


def test_env_adapter_translates_python_results_like_rpc() -> None:
    import datetime as dt

    calls: Dict[str, Any] = {}

    class Cursor:
        def savepoint(self) -> Any:
            import contextlib

            return contextlib.nullcontext()

        def commit(self) -> None:
            calls["commit"] = True

    class Env:
        uid = 7
        cr = Cursor()

        def __getitem__(self, model: str) -> Any:
            return model

    def call_kw(records: Any, method: str, args: Any, kwargs: Any) -> Any:
        return {"when": dt.datetime(2024, 5, 10, 12, 0), "day": dt.date(2024, 5, 10),
                "pair": (1, "a")}

    result = EnvAdapter(Env(), call_kw=call_kw).execute("x.y", "read", [1])
    assert result == {"when": "2024-05-10 12:00:00", "day": "2024-05-10", "pair": [1, "a"]}


# -- the fake server speaks Odoo's web client protocol too ------------------------------------


def test_fake_server_session_authenticate_and_call_kw(
        odoo_server: OdooServer, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    base = odoo_server.base_url
    with httpx.Client(base_url=base) as client:
        def rpc(path: str, **params: Any) -> Dict[str, Any]:
            answer = client.post(path, json={"jsonrpc": "2.0", "method": "call", "id": 1,
                                             "params": params})
            assert answer.status_code == 200
            return dict(answer.json())

        expired = rpc("/web/dataset/call_kw", model="res.partner", method="search", args=[[]],
                      kwargs={})
        assert expired["error"]["code"] == 100
        assert expired["error"]["data"]["name"] == "odoo.http.SessionExpiredException"
        denied = rpc("/web/session/authenticate", db="smskit", login="admin", password="x")
        assert denied["error"]["data"]["name"] == "odoo.exceptions.AccessDenied"
        session = rpc("/web/session/authenticate", db="smskit", login="admin", password="admin")
        assert session["result"]["uid"] == 2
        found = rpc("/web/dataset/call_kw/res.partner/search_read", model="res.partner",
                    method="search_read", args=[[("name", "=", "OdooBot")]],
                    kwargs={"fields": ["name"]})
        assert found["result"] == [{"id": 1, "name": "OdooBot"}]
        bad = rpc("/web/dataset/call_kw", model="res.partner", method="create",
                  args=[{"phone": "no name"}], kwargs={})
        error = bad["error"]
        assert (error["code"], error["message"]) == (200, "Odoo Server Error")
        assert error["data"]["name"] == "odoo.exceptions.ValidationError"
        assert "mandatory field" in error["data"]["message"]
        assert error["data"]["debug"].startswith("Traceback")


_PG_CLASSES = {"40001": "SerializationFailure", "40P01": "DeadlockDetected",
               "23505": "UniqueViolation"}


def _pg_error(pgcode: str, text: str) -> Exception:
    """A psycopg2 error as the ORM raises it: ``psycopg2.errors.<Name>`` with its ``pgcode``."""
    kind = type(_PG_CLASSES[pgcode], (Exception,), {"__module__": "psycopg2.errors"})
    error = kind(text)
    error.pgcode = pgcode  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(("method", "pgcode", "kind"), [
    ("write", "40001", OdooTransientError),          # could not serialize access
    ("write", "40P01", OdooTransientError),          # deadlock detected
    ("new_message", "23505", OdooTransientError),    # a conversation created meanwhile
    ("create", "23505", OdooValidationError),        # any other unique violation: refused
])
def test_concurrency_errors_are_transient_and_leave_a_fresh_transaction(
        method: str, pgcode: str, kind: type) -> None:
    env = FakeEnv(FakeOdoo("sms_base_sr"))

    def call_kw(records: Any, name: str, args: Any, kwargs: Any) -> Any:
        raise _pg_error(pgcode, "could not serialize access due to concurrent update")

    adapter = EnvAdapter(env, autocommit=True, call_kw=call_kw)
    with pytest.raises(kind):
        adapter.execute("res.partner", method, [1], {"name": "x"})
    # after a transient error (or any error outside a savepoint) the transaction is rolled
    # back: the cursor is usable and the next try sees a fresh snapshot
    assert env.cr.rollbacks == (1 if kind is OdooTransientError else 0)
    assert env.cr.commits == 0


def test_serialization_failures_over_rpc_are_transient() -> None:
    from smskit_odoo.adapter import rpc_error

    error = rpc_error("psycopg2.errors.SerializationFailure",
                      "could not serialize access due to concurrent update", "sms.message",
                      "write")
    assert isinstance(error, OdooTransientError)


def test_env_adapter_passes_the_context_as_call_kw_wants_it() -> None:
    """``odoo.api.call_kw`` gives the method the ``context`` it is passed and nothing else
    (``with_context`` on the records would be replaced): ChatRoom's ``from_webhook``, load's
    UTC and the caller's language travel in ``kwargs["context"]``."""
    seen: Dict[str, Any] = {}

    class Env:
        uid = 2
        context = {"lang": "pt_BR", "tz": "America/Sao_Paulo"}
        cr = FakeCursor()

        def __getitem__(self, model: str) -> Any:
            return model

    def call_kw(records: Any, method: str, args: Any, kwargs: Any) -> Any:
        seen.update(kwargs)
        return True

    EnvAdapter(Env(), call_kw=call_kw).execute(
        "acrux.chat.conversation", "new_message", {}, context={"from_webhook": True,
                                                               "tz": "UTC"})
    assert seen["context"] == {"lang": "pt_BR", "tz": "UTC", "from_webhook": True}
