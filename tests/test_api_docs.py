"""The API reference: every public name has a docstring (the strict docs build runs the same
check), attrs classes get their signature with fields, types and defaults, and ``#:``
comments document attributes. Needs griffe (the ``docs`` extra); skipped without it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

import pytest

griffe = pytest.importorskip("griffe", reason="griffe comes with the docs extra")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs_tools"))

from check_docstrings import missing_docstrings  # noqa: E402
from griffe_smskit import SmskitExtension  # noqa: E402


@pytest.fixture(scope="module")
def smskit_api() -> Any:
    extensions = griffe.load_extensions(SmskitExtension)
    return griffe.load("smskit", search_paths=[str(ROOT / "src")], extensions=extensions,
                       docstring_parser="sphinx")


def init_params(cls: Any) -> Dict[str, Any]:
    return {p.name: p for p in cls.members["__init__"].parameters if p.name != "self"}


def test_every_public_name_has_a_docstring() -> None:
    assert missing_docstrings() == []


def test_a_missing_docstring_is_named(tmp_path: Path) -> None:
    package = tmp_path / "pkg_for_docs_test"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n__all__ = ["f", "C"]\n'
                                         "def f(): pass\n"
                                         'class C:\n    """A class."""\n'
                                         "    def m(self): pass\n"
                                         "    def _private(self): pass\n"
                                         "def hidden(): pass\n", encoding="utf-8")
    (package / "_private.py").write_text("def g(): pass\n", encoding="utf-8")
    assert missing_docstrings(tmp_path, ["pkg_for_docs_test"]) == [
        "function pkg_for_docs_test.f", "function pkg_for_docs_test.C.m"]


@pytest.mark.parametrize(("path", "fields"), [
    ("models.SendResult", {"message_id": ("str", None), "state": ("State", None),
                           "duplicate": ("bool", "False")}),
    ("models.Message", {"id": ("str", "new_id()"), "phone": ("str", None),
                        "tags": ("Tuple[str, ...]", "()")}),
    ("provider.Capabilities", {"reconcile": ("bool", "False"),
                               "job_control": ("bool", "False")}),
    ("provider.WebhookPayload", {"statuses": ("Sequence[StatusEvent]", "()"),
                                 "inbound": ("Sequence[InboundMessage]", "()")}),
    ("provider.ReconcileResult", {"known": ("bool", None),
                                  "results": ("Sequence[SendResult]", "()")}),
    ("config.Settings", {"database_url": ("str", "'sqlite:///smskit.db'"),
                         "values": ("Mapping[str, str]", "dict()")}),
    ("config.Secret", {"value": ("str", None)}),  # the private field's argument
])
def test_attrs_classes_have_their_signature(smskit_api: Any, path: str,
                                            fields: Dict[str, Any]) -> None:
    params = init_params(smskit_api[path])
    for name, (annotation, default) in fields.items():
        assert str(params[name].annotation) == annotation
        assert (None if params[name].default is None else str(params[name].default)) == default


def test_kw_only_follows_attrs(smskit_api: Any) -> None:
    message = init_params(smskit_api["models.Message"])
    assert {p.kind.value for p in message.values()} == {"keyword-only"}
    secret = init_params(smskit_api["config.Secret"])
    assert secret["value"].kind.value == "positional or keyword"


def test_fields_and_provider_attributes_are_documented(smskit_api: Any) -> None:
    for path in ("models.Message.id", "models.SendResult.state", "provider.Provider.name",
                 "provider.Provider.max_batch", "provider.Provider.capabilities",
                 "provider.Capabilities.status_query", "provider.ReconcileResult.known"):
        attribute = smskit_api[path]
        assert attribute.annotation is not None, path
        assert attribute.docstring is not None and attribute.docstring.value, path
    assert str(smskit_api["provider.Provider.max_batch"].annotation) == "int"


def test_sphinx_roles_become_code(smskit_api: Any) -> None:
    text = smskit_api["models.SendResult"].docstring.value
    assert ":attr:" not in text and "`State.SENT`" in text
