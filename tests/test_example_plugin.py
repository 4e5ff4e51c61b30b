"""The worked plugin of docs/plugins.md (examples/smskit-acme) is what the tutorial says: a
distribution depending on smskit-sdk, announced in the ``smskit`` entry-point group, whose own
tests (the conformance suite among them) pass, and which ``smskit plugins`` lists.

``.ci/run`` installs it with pip next to the built smskit-sdk wheel and runs its tests there;
here it is "installed" the way pip would make it visible, with a ``.dist-info`` directory
carrying the entry points of its ``pyproject.toml``, so this suite needs no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from docs_blocks import blocks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.8 CI
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "smskit-acme"


def _project() -> Dict[str, Any]:
    with open(EXAMPLE / "pyproject.toml", "rb") as handle:
        project: Dict[str, Any] = tomllib.load(handle)["project"]
    return project


def test_the_example_depends_on_smskit_sdk_and_announces_its_plugin() -> None:
    project = _project()
    assert any(dep.startswith("smskit-sdk") for dep in project["dependencies"])
    assert not any(dep.split(">")[0].split("=")[0].strip() == "smskit"
                   for dep in project["dependencies"])  # the unrelated project on the index
    assert project["entry-points"]["smskit"] == {"acme": "smskit_acme.plugin"}


def test_the_tutorials_excerpts_are_the_examples_own_code() -> None:
    # docs/plugins.md quotes the example; each quoted block is tagged with the file it is from.
    excerpts = [b for b in blocks(ROOT / "docs" / "plugins.md")
                if b.tag is not None and b.tag.startswith("excerpt ")]
    assert len(excerpts) >= 8
    for block in excerpts:
        path = ROOT / str(block.tag).split(None, 1)[1]
        assert block.text in path.read_text(encoding="utf-8"), (path, block.text)


@pytest.fixture
def installed(tmp_path: Path) -> Dict[str, str]:
    """An environment in which the example is importable and its entry points visible."""
    project = _project()
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
        encoding="utf-8")
    points = "".join(f"{name} = {value}\n"
                     for name, value in project["entry-points"]["smskit"].items())
    (info / "entry_points.txt").write_text(f"[smskit]\n{points}", encoding="utf-8")
    path = [str(tmp_path), str(EXAMPLE / "src"), str(ROOT / "src"),
            os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


@pytest.mark.slow
def test_the_examples_own_tests_pass_with_nothing_skipped_but_what_it_does_not_claim(
        installed: Dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"],
        capture_output=True, text=True, check=False, timeout=300, cwd=EXAMPLE, env=installed)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "provider conformance on acme (TestAcmeConformance): 15 passed, 0 failed, " \
           "2 skipped" in out, out
    # the summary docs/plugins.md shows is this run's
    (shown,) = [b.text for b in blocks(ROOT / "docs" / "plugins.md")
                if b.lang == "text" and "provider conformance on acme" in b.text]
    for line in shown.splitlines():
        assert line in out.splitlines(), (line, out)
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 2 and all("Capabilities.blacklist is False" in line
                                     or "Capabilities.reply_polling is False" in line
                                     for line in skipped), out


def test_smskit_plugins_lists_the_example(installed: Dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "smskit", "plugins"], capture_output=True,
                          text=True, check=True, timeout=120, env=installed, cwd=tmp_path)
    assert "smskit-acme" in done.stdout
    assert "acme" in done.stdout.split("providers:", 1)[1].splitlines()[0]
