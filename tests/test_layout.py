"""Plugins use public API only: a lint over the source tree, and tests of the lint itself.

Every top-level package (``smskit``, ``smskit_odoo``, ``smskit_acrux``, ``smskit_kolmeya``
under ``src/``, each Odoo addon under ``examples/`` or ``addons/``, and the worked plugin
``examples/smskit-acme/src/smskit_acme``) may import only public
modules and names of another: nothing whose dotted path or name starts with an underscore.
In the plugin packages (all but the core), reading ``obj._name`` is allowed only on ``self``
and ``cls`` or for a private name that package defines itself; ``.pm`` (the pluggy manager
behind :class:`smskit.plugins.Plugins`), ``._store`` and any private attribute of a ``kit`` or
``plugins`` object are always refused there.

An Odoo addon (a package with a ``__manifest__.py``) works through Odoo's ORM, whose API is
named with underscores (``env["bus.bus"]._sendone``, ``env["ir.model"]._get``,
``odoo.addons.base.models.res_partner._tz_get``): Odoo is none of this tree's packages, so
there the rule is about this tree only. An addon may not import a private name of this tree's
packages (``smskit...``, ``odoo.addons.<an addon here>``), nor read a private attribute that one
of the ``src`` packages defines, unless the addon or an addon here it depends on (its
manifest's ``depends``: ``sms_smskit_chatroom`` calls ``sms_smskit``'s ``_smskit_kit``, as
Odoo's model inheritance means) defines it too; ``kit`` and ``plugins`` stay refused as above.

The lint reads syntax, not types: a private name a plugin package defines itself is allowed on
any object there (it cannot tell whose object it is), which is why the known ways into the core
are refused by name. ``getattr``/``hasattr`` with a literal name count as a read.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "smskit"
#: Attributes a plugin never reads, whoever defines a name like them.
ALWAYS_REFUSED = frozenset({"pm", "_store"})
#: Objects whose private attributes a plugin never reads (the kit, its plugin manager).
CORE_OBJECTS = frozenset({"kit", "plugins"})


def _private(name: str) -> bool:
    """``_x`` but not ``__x__`` (dunders are the language's, not anybody's private API) nor
    ``_`` alone (gettext's translation function, public by convention: ``from odoo import _``)."""
    dunder = name.startswith("__") and name.endswith("__")
    return name.startswith("_") and name != "_" and not dunder


def packages(root: Path = ROOT) -> Dict[str, List[Path]]:
    """Top-level package name -> its Python files: ``src/<pkg>``, ``examples|addons/<pkg>``
    and the example distributions' ``examples/<dist>/src/<pkg>``."""
    found: Dict[str, List[Path]] = {}
    example_sources = sorted(p for p in (root / "examples").glob("*/src") if p.is_dir())
    for parent in (root / "src", root / "examples", root / "addons", *example_sources):
        if not parent.is_dir():
            continue
        for package in sorted(p for p in parent.iterdir() if (p / "__init__.py").is_file()):
            found.setdefault(package.name, []).extend(sorted(package.rglob("*.py")))
    return found


def addon_depends(files: List[Path]) -> Optional[List[str]]:
    """The ``depends`` of the Odoo addon these files are, or ``None`` when they are no addon."""
    manifests = [p for p in files if p.name == "__manifest__.py" and len(p.parts) >= 2]
    for path in manifests:
        if (path.parent / "__init__.py") in files:
            manifest = ast.literal_eval(path.read_text(encoding="utf-8"))
            return [str(name) for name in manifest.get("depends", [])]
    return None


def _odoo_module(module: str, ours: Iterable[str]) -> bool:
    """Whether ``module`` is Odoo's own (``odoo``, ``odoo.addons.base...``), not an addon here."""
    parts = module.split(".")
    if parts[0] != "odoo":
        return False
    return not (len(parts) >= 3 and parts[1] == "addons" and parts[2] in ours)


def private_imports(tree: ast.AST, package: str,
                    odoo_ok: Iterable[str] = ()) -> Iterator[Tuple[int, str]]:
    """``(line, what)`` for each import of a private module or name of another package;
    ``odoo_ok``: for an Odoo addon, this tree's package names (Odoo's own modules pass)."""
    ours = set(odoo_ok)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != package and any(_private(p) for p in parts):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == package or (ours and _odoo_module(node.module, ours)):
                continue
            if any(_private(p) for p in parts):
                yield node.lineno, f"from {node.module} import ..."
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"


def defined_private_names(trees: Iterable[ast.AST]) -> Set[str]:
    """The private names a package defines itself: functions, classes, assigned names and
    attributes (``self._x = ...``), import aliases."""
    names: Set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
    return {n for n in names if _private(n)}


def _last_name(node: ast.expr) -> str:
    """``kit`` for ``kit``, ``self.kit`` and ``get().kit``; ``""`` otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _attribute_reads(tree: ast.AST) -> Iterator[Tuple[int, ast.expr, str]]:
    """``(line, object, attribute)`` of ``obj.attr`` and of ``getattr``/``hasattr(obj, "attr")``
    with a literal name (the way around the dot)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            yield node.lineno, node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            yield node.lineno, node.args[0], node.args[1].value


def private_attributes(tree: ast.AST, own: Set[str],
                       only: Optional[Set[str]] = None) -> Iterator[Tuple[int, str]]:
    """``(line, what)`` for each read of another package's private attribute (see the module
    docs); ``own``: the private names the package defines itself; ``only`` (an Odoo addon):
    the private names that count, the ``src`` packages' (Odoo's own ORM names pass)."""
    for line, value, attr in _attribute_reads(tree):
        base = _last_name(value)
        if isinstance(value, ast.Name) and base in ("self", "cls"):
            continue
        text = f"{base or '<expr>'}.{attr}"
        refused = attr in ALWAYS_REFUSED or (base in CORE_OBJECTS and _private(attr))
        foreign = _private(attr) and attr not in own and (only is None or attr in only)
        if refused or foreign:
            yield line, text


def violations(root: Path = ROOT) -> List[str]:
    """Every breach of the layout rules under ``root``, as ``path:line: what``."""
    found: List[str] = []
    every = packages(root)
    trees = {package: {path: ast.parse(path.read_text(encoding="utf-8"), str(path))
                       for path in files} for package, files in every.items()}
    defined = {package: defined_private_names(t.values()) for package, t in trees.items()}
    depends = {package: addon_depends(files) for package, files in every.items()}
    # what an addon may not read: the private names of the src packages (not Odoo's)
    src = {package for package, files in every.items()
           if files and files[0].relative_to(root).parts[0] == "src"}
    core_names = set().union(*(defined[p] for p in src)) if src else set()
    for package, package_trees in trees.items():
        addon = depends[package] is not None
        own = set(defined[package])
        for dependency in depends[package] or ():
            own |= defined.get(dependency, set())
        for path, tree in package_trees.items():
            where = path.relative_to(root)
            found += [f"{where}:{line}: private import {what}"
                      for line, what in private_imports(tree, package,
                                                        every if addon else ())]
            if package != CORE:
                found += [f"{where}:{line}: private attribute {what}"
                          for line, what in private_attributes(
                              tree, own, core_names if addon else None)]
    return sorted(found)


# -- the rule, applied to this repository ---------------------------------------------------------
def test_the_tree_has_the_packages_the_rule_is_about() -> None:
    found = packages()
    assert {"smskit", "smskit_odoo", "smskit_acrux", "smskit_kolmeya"} <= set(found)
    places = {path.relative_to(ROOT).parts[0] for paths in found.values() for path in paths}
    assert places & {"examples", "addons"}, "the Odoo addon (examples/ or addons/) was not found"
    assert all(found.values())


def test_no_package_uses_another_packages_private_api() -> None:
    assert violations() == []


# -- the checker itself -------------------------------------------------------------------------
def _write(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(("line", "expected"), [
    ("from smskit.store import _common", "private import from smskit.store import _common"),
    ("from smskit.store._sqlengine import create", "private import from smskit.store._sqlengine"),
    ("import smskit._builtin", "private import import smskit._builtin"),
    ("import smskit._graphemes as g", "private import import smskit._graphemes"),
    ("x = kit._store", "private attribute kit._store"),
    ("x = getattr(kit, '_store', None)", "private attribute kit._store"),
    ("x = hasattr(kit.plugins, 'pm')", "private attribute plugins.pm"),
    ("x = self.kit._store", "private attribute kit._store"),
    ("x = kit.plugins.pm.get_plugin('a')", "private attribute plugins.pm"),
    ("x = kit.plugins._providers", "private attribute plugins._providers"),
    ("x = kit._default_provider", "private attribute kit._default_provider"),
    ("x = store.sidecar._engine", "private attribute sidecar._engine"),
])
def test_the_checker_refuses_a_plugin_reaching_into_the_core(
        tmp_path: Path, line: str, expected: str) -> None:
    root = _write(tmp_path, {
        "src/smskit/__init__.py": "",
        "src/smskit_bad/__init__.py": "",
        "src/smskit_bad/plugin.py": f"def attach(kit, store):\n    {line}\n",
    })
    found = violations(root)
    assert len(found) == 1 and found[0].startswith("src/smskit_bad/plugin.py:2: ")
    assert expected in found[0]


def test_the_checker_checks_odoo_addons_under_examples_and_addons(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "src/smskit/__init__.py": "",
        "examples/odoo_one/__init__.py": "from smskit.webhooks import _gate\n",
        "addons/odoo_two/__init__.py": "",
        "addons/odoo_two/models/bridge.py": "def f(kit):\n    return kit._store\n",
    })
    assert violations(root) == [
        "addons/odoo_two/models/bridge.py:2: private attribute kit._store",
        "examples/odoo_one/__init__.py:1: private import from smskit.webhooks import _gate",
    ]


def test_an_odoo_addon_uses_odoos_api_and_its_dependencys_but_not_smskits_privates(
        tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "src/smskit/__init__.py": "",
        "src/smskit/store.py": "class Store:\n    def _lease(self):\n        pass\n",
        "addons/base_addon/__init__.py": "",
        "addons/base_addon/__manifest__.py": "{'depends': ['mail']}",
        "addons/base_addon/bridge.py": "class B:\n    def _kit(self):\n        pass\n",
        "addons/part/__init__.py": "",
        "addons/part/__manifest__.py": "{'depends': ['base_addon', 'mail']}",
        "addons/part/models.py": (
            "from odoo.addons.base.models.res_partner import _tz_get\n"
            "from odoo.addons.base_addon.bridge import _hidden\n"
            "def f(env, store, kit):\n"
            "    env['bus.bus']._sendone(1, 'n', {})\n"
            "    env['smskit.bridge']._kit()\n"
            "    store._lease()\n"
            "    return kit._anything\n"
        ),
    })
    assert violations(root) == [
        "addons/part/models.py:2: private import from odoo.addons.base_addon.bridge import "
        "_hidden",
        "addons/part/models.py:6: private attribute store._lease",
        "addons/part/models.py:7: private attribute kit._anything",
    ]


def test_the_checker_allows_what_is_public_or_the_packages_own(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "src/smskit/__init__.py": "from smskit import _builtin\nx = kit._store\n",
        "src/smskit_good/__init__.py": "",
        "src/smskit_good/store.py": (
            "from __future__ import annotations\n"
            "from smskit.plugins import Plugins, store_scheme\n"
            "from smskit_good.helpers import _note\n"
            "from . import _relative\n"
            "class Thing:\n"
            "    __slots__ = ()\n"
            "    def __init__(self, other):\n"
            "        self._cache = {}\n"
            "        self._n = other._cache\n"
            "    @classmethod\n"
            "    def make(cls):\n"
            "        return cls._defaults, type(cls).__name__\n"
            "def attach(kit):\n"
            "    return kit.plugins.get('odoo'), kit.has_store, kit.__class__\n"
        ),
    })
    assert violations(root) == []
