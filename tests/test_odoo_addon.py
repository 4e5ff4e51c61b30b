"""The Odoo 15 addon ``addons/sms_smskit``: its files are valid for Odoo and Python 3.8, and
its code runs (against stand-ins for the ``odoo`` package and the fake Odoo): the cron sends,
the webhook controller refuses callers without the secret and applies the others through
smskit's webhook gate, and an agent's ChatRoom reply goes out through smskit (the part
``addons/sms_smskit_chatroom``, loaded on top as Odoo does). (That the gate's synchronous path
answers as the reference server does is tested in ``test_webhook_gate.py``.)"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlencode

import pytest

from po_helpers import po_entries
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeEnv, fake_call_kw

ADDON = Path(__file__).resolve().parent.parent / "addons" / "sms_smskit"
CHATROOM = ADDON.parent / "sms_smskit_chatroom"
SECRET = "addon-secret"
PHONE = "+5511987654321"


# -- the files ------------------------------------------------------------------------------


def test_python_files_are_valid_python_38() -> None:
    files = sorted(ADDON.rglob("*.py"))
    assert len(files) >= 7
    for path in files:
        source = path.read_text(encoding="utf-8")
        ast.parse(source, filename=str(path), feature_version=(3, 8))
        compile(source, str(path), "exec")


def test_manifest_and_data_files() -> None:
    manifest = ast.literal_eval((ADDON / "__manifest__.py").read_text(encoding="utf-8"))
    assert manifest["version"].startswith("15.0.")
    assert {"base", "base_setup", "mail", "sms"} <= set(manifest["depends"])
    # the ChatRoom part comes by itself where the ChatRoom is: the app installs without it
    assert "whatsapp_connector" not in manifest["depends"]
    chatroom = ast.literal_eval((CHATROOM / "__manifest__.py").read_text(encoding="utf-8"))
    assert set(chatroom["depends"]) == {"sms_smskit", "whatsapp_connector"}
    assert chatroom["auto_install"] is True
    assert manifest["external_dependencies"] == {"python": ["smskit-sdk"]}
    for name in manifest["data"]:
        if name.endswith(".csv"):  # access rights: Odoo's header, one row per line
            lines = (ADDON / name).read_text(encoding="utf-8").splitlines()
            assert lines[0].startswith("id,name,model_id:id,group_id:id,perm_read")
            continue
        root = ET.parse(ADDON / name).getroot()
        assert root.tag == "odoo"
    cron = ET.parse(ADDON / "data" / "ir_cron.xml").getroot().find(".//record")
    assert cron is not None and cron.get("model") == "ir.cron"
    fields = {f.get("name"): f for f in cron.iter("field")}
    assert fields["model_id"].get("ref") == "model_smskit_bridge"
    assert fields["code"].text == "model._cron_run()"
    assert (ADDON / "README.md").read_text(encoding="utf-8").count("addons_path") >= 1


# -- the code, against stand-ins for odoo ------------------------------------------------------


class AddonEnv(FakeEnv):
    """``env`` with the addon's ``smskit.bridge`` model in its registry."""

    bridge_class: Any = None
    context: Dict[str, Any] = {}

    def __getitem__(self, model: str) -> Any:
        if model == "smskit.bridge":
            bridge = self.bridge_class()
            bridge.env = self
            return bridge
        if model == "base":
            return types.SimpleNamespace(flush=lambda: None)
        return super().__getitem__(model)

    def __contains__(self, model: object) -> bool:
        return model in ("smskit.bridge", "base") or model in self.fake.orm.models

    def __call__(self, user: Optional[int] = None, **_: Any) -> AddonEnv:
        return AddonEnv(self.fake, self.uid if user is None else user, self.cr)


class AbstractModel:
    """``odoo.models.AbstractModel``: what the bridge uses of it."""

    env: Any = None

    def with_user(self, uid: int) -> Any:
        other = type(self)()
        other.env = self.env(user=uid)
        return other


class Request:
    """``odoo.http.request`` for one call."""

    def __init__(self, env: AddonEnv, body: bytes, args: Dict[str, str],
                 headers: Dict[str, str]) -> None:
        self.env = env
        self.cr = env.cr
        self.db = env.cr.dbname
        query = urlencode(args).encode()
        self.httprequest = types.SimpleNamespace(
            method="POST", headers=headers, args=args, query_string=query,
            url="http://odoo.example/smskit/webhooks?" + query.decode(),
            remote_addr="127.0.0.1", get_data=lambda: body,
            mimetype=headers.get("Content-Type", "").split(";")[0].strip().lower(), form={})


class Response:
    """``odoo.http.Response``."""

    def __init__(self, data: str, status: int, headers: List[Tuple[str, str]]) -> None:
        self.data = data
        self.status_code = status
        self.headers = dict(headers)


class RequestProxy:
    """Odoo's ``request`` is a proxy to the request being served; so is this one."""

    current: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


class BaseModel:
    """``odoo.models.Model``: what the overrides call through ``super()``."""

    calls: List[Any] = []

    def ca_request(self, path: str, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((path, data))
        return {"sent_by": "whatsapp"}


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def _error(name: str, *bases: type) -> type:
    return type(name, bases or (Exception,), {})


def _anything(*args: Any, **kwargs: Any) -> Any:
    """A field (``fields.Char(...)``) or a decorator (``api.depends(...)``) that does nothing:
    what the addon's screen models need to be importable here (the bridge is what runs)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return _anything


class _Permissive(types.ModuleType):
    """A module whose every missing attribute is :func:`_anything`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _anything


def _load(name: str, folder: Path) -> types.ModuleType:
    """Import the addon package in ``folder`` as ``name`` (as Odoo's loader does)."""
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package  # its relative imports need it (the fixture puts it back)
    spec.loader.exec_module(package)
    return package


@pytest.fixture
def addon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    fake = FakeOdoo("sms_base_sr")
    pg_error = _error("Error")
    psycopg2 = _module("psycopg2", Error=pg_error, OperationalError=_error(
        "OperationalError", pg_error), InterfaceError=_error("InterfaceError", pg_error))
    psycopg2.pool = _module("psycopg2.pool", PoolError=_error("PoolError", pg_error))  # type: ignore[attr-defined]
    http_error = _error("HTTPException")
    werkzeug = _module("werkzeug")
    werkzeug.exceptions = _module(  # type: ignore[attr-defined]
        "werkzeug.exceptions", HTTPException=http_error,
        NotFound=_error("NotFound", http_error),
        MethodNotAllowed=_error("MethodNotAllowed", http_error))
    http = _module("odoo.http", Controller=object, route=lambda *a, **k: (lambda f: f),
                   db_monodb=lambda httprequest=None: fake.database,
                   request=RequestProxy(), Response=Response,
                   HttpRequest=type("HttpRequest", (), {}),
                   Root=type("Root", (), {"get_request": lambda self, r: None}))
    identity = lambda f: f  # noqa: E731 - a decorator that changes nothing
    api = _module("odoo.api", model=identity, model_create_multi=identity,
                  call_kw=fake_call_kw, depends=_anything, depends_context=_anything,
                  onchange=_anything, returns=_anything,
                  Environment=lambda cr, uid, context: AddonEnv(fake, uid, cr))
    models = _module("odoo.models", AbstractModel=AbstractModel, Model=BaseModel,
                     TransientModel=BaseModel)
    fields = _Permissive("odoo.fields")
    tools = _module("odoo.tools", config={"data_dir": str(tmp_path)})
    exceptions = _module("odoo.exceptions", UserError=_error("UserError"),
                         AccessError=_error("AccessError"))
    res_partner = _module("odoo.addons.base.models.res_partner", _tz_get=lambda self: [])
    stock_sms = _module("odoo.addons.sms.models.sms_sms",
                        SmsSms=type("SmsSms", (), {"IAP_TO_SMS_STATE": {}}))
    conf = _module("odoo.conf", server_wide_modules=["base", "web"])
    service = _module("odoo.service")
    service.db = _module("odoo.service.db", list_dbs=lambda force=False: [fake.database])  # type: ignore[attr-defined]
    odoo = _module("odoo", SUPERUSER_ID=1, _=lambda text: text)
    for name in ("addons", "addons.base", "addons.base.models", "addons.sms",
                 "addons.sms.models"):
        monkeypatch.setitem(sys.modules, f"odoo.{name}", _module(f"odoo.{name}"))
    monkeypatch.setitem(sys.modules, "odoo.addons.base.models.res_partner", res_partner)
    monkeypatch.setitem(sys.modules, "odoo.addons.sms.models.sms_sms", stock_sms)
    for name, module in [("api", api), ("models", models), ("fields", fields), ("tools", tools),
                         ("exceptions", exceptions), ("http", http), ("conf", conf),
                         ("service", service), ("service.db", service.db)]:  # type: ignore[attr-defined]
        setattr(odoo, name, module)
        monkeypatch.setitem(sys.modules, f"odoo.{name}", module)
    monkeypatch.setitem(sys.modules, "odoo", odoo)
    for name, module in [("psycopg2", psycopg2), ("psycopg2.pool", psycopg2.pool),  # type: ignore[attr-defined]
                         ("werkzeug", werkzeug),
                         ("werkzeug.exceptions", werkzeug.exceptions)]:  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n.startswith("sms_smskit")]:
        del sys.modules[name]  # each test imports the addon against its own stand-ins
    package, chatroom = _load("sms_smskit", ADDON), _load("sms_smskit_chatroom", CHATROOM)
    for name, module in (("sms_smskit", package), ("sms_smskit_chatroom", chatroom)):
        monkeypatch.setitem(sys.modules, name, module)
    # smskit.bridge as Odoo builds it with both installed: the ChatRoom part's methods on top
    AddonEnv.bridge_class = type("SmskitBridge", (
        chatroom.models.smskit_bridge.SmskitBridgeChatRoom,
        package.models.smskit_bridge.SmskitBridge), {})
    # the addon's default store is the Odoo database itself (PostgreSQL, schema smskit,
    # tested against a real Odoo in tests/odoo15): here a SQLite file named by hand
    for key, value in [("smskit.provider", "loopback"), ("smskit.webhook_secret", SECRET),
                       ("smskit.allow_insecure_webhooks", "true"),
                       ("smskit.odoo_sidecar_url", f"sqlite:///{tmp_path / 'smskit.db'}")]:
        fake.add("ir.config_parameter", {"key": key, "value": value})
    yield types.SimpleNamespace(package=package, chatroom=chatroom, fake=fake, http=http,
                                env=AddonEnv(fake, 1))
    package.models.smskit_bridge.kit_pool().clear()
    for name in [n for n in sys.modules if n.startswith("sms_smskit.")]:
        del sys.modules[name]


def rows(fake: FakeOdoo) -> List[Dict[str, Any]]:
    return fake.records("sms.message")


def test_send_and_the_cron(addon: Any) -> None:
    bridge = addon.env["smskit.bridge"]
    settings = bridge._smskit_settings()
    assert settings.get("odoo_sidecar_url", "").endswith("/smskit.db")  # named by hand
    assert settings.get("allow_insecure_webhooks") is None  # the addon always wants the secret
    sent = bridge.smskit_send(PHONE, "Olá")
    assert sent["state"] == "sent"
    [row] = rows(addon.fake)
    assert (row["state"], row["provider_reference"]) == ("sent", sent["message_id"])
    queued = bridge.smskit_send("+5511987654322", "Mais tarde", dispatch=False)
    assert queued["state"] == "outgoing"
    assert addon.env.cr.commits >= 2  # rows committed before anything was sent
    bridge._cron_run()
    assert [r["state"] for r in rows(addon.fake)] == ["sent", "sent"]


def call_webhook(addon: Any, kind: str, payload: Dict[str, Any],
                 token: Optional[str]) -> Any:
    body = json.dumps(payload).encode()
    args = {"token": token} if token else {}
    addon.http.request.current = Request(addon.env, body, args,
                                         {"Content-Type": "application/json"})
    controller = addon.package.controllers.webhook.SmskitWebhookController()
    return controller.smskit_webhook("loopback", kind, **args)


def test_the_webhook_controller_wants_the_secret(addon: Any) -> None:
    sent = addon.env["smskit.bridge"].smskit_send(PHONE, "Olá")
    event = {"message_id": sent["message_id"], "state": "delivered"}
    for token, status in [(None, 401), ("wrong", 403)]:
        response = call_webhook(addon, "status", event, token)
        assert response.status_code == status
        assert "error" in json.loads(response.data)
    assert rows(addon.fake)[0]["state"] == "sent"
    response = call_webhook(addon, "status", event, SECRET)
    assert response.status_code == 200
    assert json.loads(response.data)["applied"] == 1
    assert response.headers["Content-Type"] == "application/json"
    assert rows(addon.fake)[0]["state"] == "delivered"


def test_no_secret_no_webhook(addon: Any) -> None:
    [param] = [p for p in addon.fake.records("ir.config_parameter")
               if p["key"] == "smskit.webhook_secret"]
    addon.fake.execute_kw(1, "ir.config_parameter", "unlink", [[param["id"]]], {})
    response = call_webhook(addon, "reply", {"id": "R-1", "phone": PHONE, "text": "oi"}, None)
    assert response.status_code == 503
    assert rows(addon.fake) == []


def _connector(addon: Any, kind: str) -> Any:
    """An ``acrux.chat.connector`` of ``kind`` (ChatRoom's stand-in record)."""
    record = addon.chatroom.models.acrux_connector.AcruxChatConnector()
    record.env = addon.env
    record.connector_type = kind
    record.id, record.name = 7, "SMS"
    record.__class__.__len__ = lambda self: 1
    return record


def test_agent_replies_in_an_sms_conversation_go_out_through_smskit(addon: Any) -> None:
    def connector(kind: str) -> Any:
        return _connector(addon, kind)

    answer = connector("sms").ca_request("send", {"number": "5511987654321", "text": "Oi!",
                                                  "msgid": "m-1"})
    [row] = rows(addon.fake)
    assert (row["phone"], row["body"], row["state"]) == (PHONE, "Oi!", "sent")
    assert answer == {"msg_id": row["provider_reference"]}
    again = connector("sms").ca_request("send", {"number": "5511987654321", "text": "Oi!",
                                                 "msgid": "m-1"})
    assert again == answer and len(rows(addon.fake)) == 1  # a retried send is not resent
    assert connector("apichat.io").ca_request("send", {"x": 1}) == {"sent_by": "whatsapp"}
    assert BaseModel.calls[-1] == ("send", {"x": 1})


def test_a_reply_whose_request_odoo_runs_again_is_not_sent_again(
        addon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Odoo rolls the agent's request back after the SMS went (a concurrent update) and runs
    # it again on the same thread: a new ChatRoom message (m-42) with the same reply
    bridge = addon.package.models.smskit_bridge  # the memory is the base bridge's
    dropped: List[Any] = []
    monkeypatch.setattr(type(addon.env["smskit.bridge"]), "_smskit_drop_rolled_back_reply",
                        lambda self, *args: dropped.append(args), raising=False)

    def reply(record: int, text: str = "Já vai") -> Any:
        return _connector(addon, "sms").ca_request(
            "send", {"number": "5511987654321", "text": text, "msgid": f"m-{record}"})

    first = reply(41)
    addon.env.cr.rollback()  # its post-rollback callbacks run
    assert reply(42) == first and len(rows(addon.fake)) == 1
    assert [args[:2] for args in dropped] == [("chatroom:7:m-41", "chatroom:7:m-42")]
    assert reply(43) != first and len(rows(addon.fake)) == 2  # taken once only
    addon.env.cr.commit()  # a committed reply is not remembered
    addon.env.cr.rollback()
    assert reply(44) != first and len(rows(addon.fake)) == 3
    # another text is another reply; a rolled-back reply is forgotten after two minutes
    reply(45)
    addon.env.cr.rollback()
    assert len({reply(46, "Outra coisa")["msg_id"], reply(45)["msg_id"]}) == 2
    assert len(rows(addon.fake)) == 5
    reply(47, "Até logo")
    addon.env.cr.rollback()
    later = bridge.time.monotonic() + bridge.REMEMBERED_SECONDS + 1
    monkeypatch.setattr(bridge.time, "monotonic", lambda: later)
    reply(48, "Até logo")
    assert len(rows(addon.fake)) == 7


def test_smskit_send_in_a_request_odoo_runs_again_sends_once(addon: Any) -> None:
    # your code calls smskit_send, then a concurrent update rolls the request back and Odoo
    # runs it again: the same call answers the first run's SMS
    bridge = addon.env["smskit.bridge"]
    first = bridge.smskit_send(PHONE, "Seu boleto vence hoje", tags=["cobranca"])
    addon.env.cr.rollback()
    again = bridge.smskit_send(PHONE, "Seu boleto vence hoje", tags=["cobranca"])
    assert again == first and len(rows(addon.fake)) == 1
    assert bridge.smskit_send(PHONE, "Seu boleto vence hoje", tags=["cobranca"]) != first
    assert len(rows(addon.fake)) == 2  # the memory is taken once; a later call is a new SMS
    many = bridge.smskit_send_many([PHONE, "+5511987654322"], "Promoção")
    addon.env.cr.rollback()
    assert bridge.smskit_send_many([PHONE, "+5511987654322"], "Promoção") == many
    assert many["sent"] == 2 and len(rows(addon.fake)) == 4
    # committed, nothing is remembered: the same call sends again
    bridge.smskit_send(PHONE, "Outra")
    addon.env.cr.commit()
    addon.env.cr.rollback()
    bridge.smskit_send(PHONE, "Outra")
    assert len(rows(addon.fake)) == 6


def _translatable(path: Path) -> List[str]:
    """The literal strings passed to ``_()`` in one Python file of the addon."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_":
            found.append(ast.literal_eval(node.args[0]))
    return found


def test_every_agent_facing_text_has_its_portuguese() -> None:
    texts = {t for p in ADDON.rglob("*.py") if "tests" not in p.parts for t in _translatable(p)}
    assert len(texts) >= 50
    translated = po_entries(ADDON / "i18n" / "pt_BR.po")
    template = po_entries(ADDON / "i18n" / "sms_smskit.pot")
    assert texts <= set(template), "i18n/sms_smskit.pot misses _() texts: regenerate it"
    assert set(translated) == set(template), "i18n/pt_BR.po and the .pot differ"
    for source, target in translated.items():
        assert target, f"not translated: {source!r}"
        # the same placeholders and markup, so formatting or rendering cannot fail
        assert sorted(re.findall(r"%\(\w+\)s|%s|%d|\{\{[^}]*\}\}|<[^>]+>", source)) == \
            sorted(re.findall(r"%\(\w+\)s|%s|%d|\{\{[^}]*\}\}|<[^>]+>", target)), source
    for source in texts:  # words to translate (not a mere "%(provider)s: %(error)s")
        if re.search(r"[A-Za-z]", re.sub(r"%\(\w+\)s|%s|%d", "", source)):
            assert translated[source] != source, source


def test_errors_name_system_parameters_not_environment_variables(addon: Any) -> None:
    names = addon.package.models.smskit_bridge.parameter_names
    assert names("SMSKIT_KOLMEYA_TOKEN (kolmeya_token) is not set") == \
        "smskit.kolmeya_token is not set"
    assert names("set SMSKIT_WEBHOOK_SECRET first") == "set smskit.webhook_secret first"


def test_rpc_answers_carry_no_none(addon: Any) -> None:
    bridge = addon.env["smskit.bridge"]
    sent = bridge.smskit_send(PHONE, "Olá")
    assert sent["reason"] is False and sent["deferred_until"] is False
    assert None not in sent.values()
    later = bridge.smskit_send("+5511987654322", "Depois", at="2030-01-01 12:00:00")
    assert later["state"] == "outgoing" and later["deferred_until"] is False
    errors = addon.package.models.smskit_bridge.UserError
    with pytest.raises(errors, match="Invalid date"):
        bridge.smskit_send(PHONE, "Olá", at="amanhã")
    with pytest.raises(errors, match="does not know the option"):
        bridge.smskit_send(PHONE, "Olá", when="2030-01-01")


def test_the_cron_says_once_what_is_missing_and_does_nothing(
        addon: Any, caplog: pytest.LogCaptureFixture) -> None:
    [provider] = [p for p in addon.fake.records("ir.config_parameter")
                  if p["key"] == "smskit.provider"]
    addon.fake.execute_kw(1, "ir.config_parameter", "write", [[provider["id"]],
                                                              {"value": "kolmeya"}], {})
    bridge = addon.env["smskit.bridge"]
    with caplog.at_level(logging.INFO):
        bridge._cron_run()
    lines = [r for r in caplog.records if r.name.startswith("sms_smskit")]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert "smskit.kolmeya_token" in lines[0].getMessage()
    assert "SMSKIT_" not in caplog.text
    assert addon.package.models.smskit_bridge.kit_pool().built == 0  # nothing was built
