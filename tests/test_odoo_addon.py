"""The Odoo 15 addon ``addons/sms_smskit``: its files are valid for Odoo and Python 3.8, and
its code runs (against stand-ins for the ``odoo`` package and the fake Odoo): the cron sends,
the webhook controller refuses callers without the secret and applies the others through
smskit's webhook gate, and an agent's ChatRoom reply goes out through smskit. (That the gate's
synchronous path answers as the reference server does is tested in ``test_webhook_gate.py``.)"""

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

from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeEnv, fake_call_kw

ADDON = Path(__file__).resolve().parent.parent / "addons" / "sms_smskit"
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
    assert {"base", "mail", "whatsapp_connector"} <= set(manifest["depends"])
    assert manifest["external_dependencies"] == {"python": ["smskit-sdk"]}
    for name in manifest["data"]:
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
            remote_addr="127.0.0.1", get_data=lambda: body)


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
                  call_kw=fake_call_kw,
                  Environment=lambda cr, uid, context: AddonEnv(fake, uid, cr))
    models = _module("odoo.models", AbstractModel=AbstractModel, Model=BaseModel)
    tools = _module("odoo.tools", config={"data_dir": str(tmp_path)})
    exceptions = _module("odoo.exceptions", UserError=_error("UserError"))
    conf = _module("odoo.conf", server_wide_modules=["base", "web"])
    service = _module("odoo.service")
    service.db = _module("odoo.service.db", list_dbs=lambda force=False: [fake.database])  # type: ignore[attr-defined]
    odoo = _module("odoo", SUPERUSER_ID=1, _=lambda text: text)
    for name, module in [("api", api), ("models", models), ("tools", tools),
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
    spec = importlib.util.spec_from_file_location("sms_smskit", ADDON / "__init__.py",
                                                  submodule_search_locations=[str(ADDON)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sms_smskit", package)
    spec.loader.exec_module(package)
    AddonEnv.bridge_class = package.models.smskit_bridge.SmskitBridge
    for key, value in [("smskit.provider", "loopback"), ("smskit.webhook_secret", SECRET),
                       ("smskit.allow_insecure_webhooks", "true")]:
        fake.add("ir.config_parameter", {"key": key, "value": value})
    yield types.SimpleNamespace(package=package, fake=fake, http=http,
                                env=AddonEnv(fake, 1))
    package.models.smskit_bridge.kit_pool().clear()
    for name in [n for n in sys.modules if n.startswith("sms_smskit.")]:
        del sys.modules[name]


def rows(fake: FakeOdoo) -> List[Dict[str, Any]]:
    return fake.records("sms.message")


def test_send_and_the_cron(addon: Any) -> None:
    bridge = addon.env["smskit.bridge"]
    settings = bridge._smskit_settings()
    assert settings.get("odoo_sidecar_url", "").endswith("/smskit/smskit.db")
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


def test_agent_replies_in_an_sms_conversation_go_out_through_smskit(addon: Any) -> None:
    connector_class = addon.package.models.acrux_connector.AcruxChatConnector

    def connector(kind: str) -> Any:
        record = connector_class()
        record.env = addon.env
        record.connector_type = kind
        record.id, record.name = 7, "SMS"
        record.__class__.__len__ = lambda self: 1
        return record

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


def _translatable(path: Path) -> List[str]:
    """The literal strings passed to ``_()`` in one Python file of the addon."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_":
            found.append(ast.literal_eval(node.args[0]))
    return found


def _po_entries(path: Path) -> Dict[str, str]:
    """msgid -> msgstr of a ``.po`` file (single-line entries, as the addon writes them)."""
    entries: Dict[str, str] = {}
    msgid = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("msgid "):
            msgid = ast.literal_eval(line[6:])
        elif line.startswith("msgstr ") and msgid:
            entries[msgid] = ast.literal_eval(line[7:])
    return entries


def test_every_agent_facing_text_has_its_portuguese() -> None:
    texts = {t for p in ADDON.rglob("*.py") if "tests" not in p.parts for t in _translatable(p)}
    assert len(texts) >= 6
    translated = _po_entries(ADDON / "i18n" / "pt_BR.po")
    assert set(translated) == texts, "i18n/pt_BR.po and the _() texts differ"
    assert set(_po_entries(ADDON / "i18n" / "sms_smskit.pot")) == texts
    for source, target in translated.items():
        assert target and target != source, source
        # the same placeholders, so formatting the translation cannot fail
        assert sorted(re.findall(r"%\(\w+\)s|%s", source)) == sorted(
            re.findall(r"%\(\w+\)s|%s", target)), source


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
