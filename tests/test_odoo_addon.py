"""The Odoo 15 addon ``addons/sms_smskit``: its files are valid for Odoo and Python 3.8, and
its code runs (against stand-ins for the ``odoo`` package and the fake Odoo): the cron sends,
the webhook controller refuses callers without the secret and applies the others through
smskit's webhook gate, and an agent's ChatRoom reply goes out through smskit. (That the gate's
synchronous path answers as the reference server does is tested in ``test_webhook_gate.py``.)"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlencode

import pytest

from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeCursor, FakeEnv, fake_call_kw

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

    def __getitem__(self, model: str) -> Any:
        if model == "smskit.bridge":
            bridge = self.bridge_class()
            bridge.env = self
            return bridge
        return super().__getitem__(model)


class Request:
    """``odoo.http.request`` for one call."""

    def __init__(self, cr: FakeCursor, body: bytes, args: Dict[str, str],
                 headers: Dict[str, str]) -> None:
        self.cr = cr
        query = urlencode(args).encode()
        self.httprequest = types.SimpleNamespace(
            method="POST", headers=headers, args=args, query_string=query,
            url="http://odoo.example/smskit/webhooks?" + query.decode(),
            remote_addr="127.0.0.1", get_data=lambda: body)

    @staticmethod
    def make_response(data: str, headers: List[Tuple[str, str]]) -> Any:
        return types.SimpleNamespace(data=data, headers=dict(headers), status_code=200)


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


@pytest.fixture
def addon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    fake = FakeOdoo("sms_base_sr")
    http = types.ModuleType("odoo.http")
    http.Controller = object  # type: ignore[attr-defined]
    http.route = lambda *a, **k: (lambda f: f)  # type: ignore[attr-defined]
    http.request = RequestProxy()  # type: ignore[attr-defined]
    api = types.ModuleType("odoo.api")
    api.model = lambda f: f  # type: ignore[attr-defined]
    api.call_kw = fake_call_kw  # type: ignore[attr-defined]
    api.Environment = lambda cr, uid, context: AddonEnv(fake, uid, cr)  # type: ignore
    models = types.ModuleType("odoo.models")
    models.AbstractModel = type("AbstractModel", (), {})  # type: ignore[attr-defined]
    models.Model = BaseModel  # type: ignore[attr-defined]
    tools = types.ModuleType("odoo.tools")
    tools.config = {"data_dir": str(tmp_path)}  # type: ignore[attr-defined]
    exceptions = types.ModuleType("odoo.exceptions")
    exceptions.UserError = type("UserError", (Exception,), {})  # type: ignore[attr-defined]
    odoo = types.ModuleType("odoo")
    odoo.SUPERUSER_ID = 1  # type: ignore[attr-defined]
    odoo._ = lambda text: text  # type: ignore[attr-defined]
    for name, module in [("api", api), ("models", models), ("tools", tools),
                         ("exceptions", exceptions), ("http", http)]:
        setattr(odoo, name, module)
        monkeypatch.setitem(sys.modules, f"odoo.{name}", module)
    monkeypatch.setitem(sys.modules, "odoo", odoo)
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
    addon.http.request.current = Request(addon.env.cr, body, args,
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
