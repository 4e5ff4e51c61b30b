"""Check the built sdist and wheel: `python .ci/check-dist.py DIST_DIR` (run by .ci/run).

The distribution is named smskit-sdk (``smskit`` on the package index is an unrelated project);
the wheel carries the four import packages with their data (migrations, the dashboard's static
files, ``py.typed``), the ``smskit`` console script and the ``smskit`` entry points; the sdist
carries the sources, the tests, the docs, the Odoo addon and the examples (every file git
tracks under ``addons/`` and ``examples/``). Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import List

NAME = "smskit-sdk"
PACKAGES = ("smskit", "smskit_kolmeya", "smskit_odoo", "smskit_acrux")
ROOT = Path(__file__).resolve().parent.parent


def fail(problems: List[str]) -> None:
    if problems:
        sys.exit("distribution check failed:\n  " + "\n  ".join(problems))


def check_wheel(path: Path) -> List[str]:
    problems: List[str] = []
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        meta_dir = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        metadata = Parser().parsestr(wheel.read(f"{meta_dir}/METADATA").decode("utf-8"))
        entry_points = wheel.read(f"{meta_dir}/entry_points.txt").decode("utf-8")
    if metadata["Name"] != NAME:
        problems.append(f"wheel metadata names {metadata['Name']!r}, not {NAME!r}")
    for package in PACKAGES:
        if f"{package}/__init__.py" not in names:
            problems.append(f"wheel lacks the package {package}")
    for needed in ("smskit/py.typed", "smskit/store/sql/migrations/env.py",
                   "smskit/store/sql/migrations/script.py.mako"):
        if needed not in names:
            problems.append(f"wheel lacks {needed}")
    if not any(n.startswith("smskit/store/sql/migrations/versions/0001") for n in names):
        problems.append("wheel lacks the migrations")
    if not any(n.startswith("smskit/server/static/") for n in names):
        problems.append("wheel lacks the dashboard's static files")
    if any(n.startswith(("tests/", "addons/", "docs/")) for n in names):
        problems.append("wheel carries tests, docs or the addon (the sdist's job)")
    if "smskit = smskit.cli:main" not in entry_points:
        problems.append("wheel lacks the smskit console script")
    for plugin in ("kolmeya", "odoo", "acrux"):
        if f"{plugin} = smskit_{plugin}.plugin" not in entry_points:
            problems.append(f"wheel lacks the {plugin} entry point")
    print(f"{path.name}: {NAME} {metadata['Version']}, {len(names)} files")  # noqa: T201
    return problems


def check_sdist(path: Path) -> List[str]:
    problems: List[str] = []
    with tarfile.open(path) as sdist:
        members = sdist.getnames()
        prefix = members[0].split("/")[0]
        pkg_info = sdist.extractfile(f"{prefix}/PKG-INFO")
        assert pkg_info is not None
        metadata = Parser().parsestr(pkg_info.read().decode("utf-8"))
    names = {m.split("/", 1)[1] for m in members if "/" in m}
    if metadata["Name"] != NAME:
        problems.append(f"sdist metadata names {metadata['Name']!r}, not {NAME!r}")
    tracked = subprocess.run(["git", "ls-files",  # noqa: S607 - git from PATH, as CI has it "addons", "examples", "src", "docs",
                              "docs_tools", "tests/docs_blocks.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if name not in names:
            problems.append(f"sdist lacks {name}")
    for needed in ("addons/sms_smskit/__manifest__.py", "pyproject.toml", "README.md",
                   "mkdocs.yml"):
        if needed not in names:
            problems.append(f"sdist lacks {needed}")
    examples = [n for n in tracked if n.startswith("examples/")]
    print(f"{path.name}: {len(names)} files, addons and {len(examples)} example "  # noqa: T201
          "files included")
    return problems


def main() -> None:
    dist = Path(sys.argv[1])
    wheels = sorted(dist.glob("smskit_sdk-*-py3-none-any.whl"))
    sdists = sorted(dist.glob("smskit_sdk-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        fail([f"expected one smskit_sdk wheel and one sdist in {dist}, found "
              f"{[p.name for p in dist.iterdir()]}"])
    fail(check_wheel(wheels[0]) + check_sdist(sdists[0]))


if __name__ == "__main__":
    main()
