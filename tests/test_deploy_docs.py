"""docs/deploy.md as an operator follows it.

Every shell block tagged ``run`` runs in order (``run-postgres`` ones against the test
PostgreSQL database) with ``/opt/smskit``, ``/etc/smskit``, ``/var/lib/smskit`` and
``/var/backups/smskit`` mapped to a temporary directory, ``smskit`` being this checkout, and
``systemctl`` / ``journalctl`` stubs that record their arguments. Files (``file PATH``) are
written out and checked: the systemd units with ``systemd-analyze verify``, the environment file
by loading it, the nginx snippet and the Dockerfile for their shape and for agreeing with the
rest of the page (nginx and Docker are not run). ``wheel`` blocks (install, upgrade) run in
``.ci/run`` against the built wheel; here their requirement is checked.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from docs_blocks import Block, blocks

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "deploy.md"
MAPPED = ("/opt/smskit", "/etc/smskit", "/var/lib/smskit", "/var/backups/smskit",
          "/etc/systemd/system", "/etc/nginx")
DOC_PG = "postgres://smskit:secret@db.example.com:5432/smskit"
PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
UNIT_VERBS = {"daemon-reload", "enable", "start", "stop", "restart", "status"}


def page_blocks() -> List[Block]:
    return blocks(PAGE)


def tagged(kind: str) -> List[Block]:
    return [b for b in page_blocks() if b.tag is not None and b.tag.split()[0] == kind]


def files() -> Dict[str, str]:
    """``file PATH`` blocks by path."""
    return {b.tag.split(None, 1)[1]: b.text for b in tagged("file") if b.tag}


def mapped(text: str, root: Path) -> str:
    pattern = "|".join(re.escape(p) for p in MAPPED)
    return re.sub(pattern, lambda m: f"{root}{m.group(0)}", text)


def unit_names() -> List[str]:
    return [Path(p).name for p in files() if p.startswith("/etc/systemd/system/")]


def unit_value(unit: str, key: str) -> str:
    text = files()[f"/etc/systemd/system/{unit}"]
    (value,) = re.findall(rf"^{key}=(.*)$", text, flags=re.M)
    return value.strip()


def cli_parses(args: List[str]) -> None:
    """``smskit ARGS`` (a command and its options, no global option) is a valid command line:
    parsed by the command, not run."""
    import click

    from smskit.cli import build_cli

    command: click.Command = build_cli()
    rest = list(args)
    while isinstance(command, click.Group):
        found = command.get_command(click.Context(command), rest.pop(0))
        assert found is not None, args
        command = found
    command.make_context(command.name or "", rest)


# -- the machine ---------------------------------------------------------------------------------
@pytest.fixture
def machine(tmp_path: Path) -> Tuple[Path, Dict[str, str]]:
    """A root directory with the page's files, ``smskit`` on PATH, and stubbed systemd."""
    root = tmp_path / "root"
    for prefix in MAPPED:
        (root / prefix.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, text in files().items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(mapped(text, root), encoding="utf-8")
    bin_dir = root / "opt" / "smskit" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "smskit"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT / 'src'} exec {sys.executable} -m smskit "
                    '"$@"\n', encoding="utf-8")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls.log"
    for name in ("systemctl", "journalctl"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n', encoding="utf-8")
        stub.chmod(0o755)
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SMSKIT_") and k != "PYTHONPATH"}
    env["PATH"] = f"{stubs}:{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    return root, env


def run_block(block: Block, root: Path, env: Dict[str, str],
              pg_url: Optional[str] = None) -> str:
    script = mapped(block.text, root)
    if pg_url is not None:
        script = script.replace(DOC_PG, pg_url)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{block.text}\n--- stdout\n{proc.stdout}\n--- stderr\n" \
                                 f"{proc.stderr}"
    return proc.stdout


def test_every_block_says_what_its_test_does() -> None:
    kinds = {"run", "run-postgres", "wheel", "file", "check"}
    for block in page_blocks():
        if block.lang == "text":  # log samples, checked against the worker below
            continue
        assert block.tag is not None and block.tag.split()[0] in kinds, block.text


def test_the_shell_blocks_run_in_order(machine: Tuple[Path, Dict[str, str]]) -> None:
    from smskit.store.sql.engine import head_revision

    root, env = machine
    for block in tagged("run"):
        run_block(block, root, env)
    database = root / "var" / "lib" / "smskit" / "smskit.db"
    assert database.exists()
    backups = list((root / "var" / "backups" / "smskit").glob("smskit-*.db"))
    assert len(backups) == 1
    out = run_block(Block("bash", "run", "smskit --database sqlite:////var/lib/smskit/smskit.db"
                          " db check --json\n"), root, env)
    assert json.loads(out)["current"] == head_revision()
    calls = (root.parent / "calls.log").read_text(encoding="utf-8").splitlines()
    assert any(c.startswith("systemctl enable --now") for c in calls)
    for call in calls:
        words = call.split()
        if words[0] == "systemctl":
            assert words[1] in UNIT_VERBS, call
        names = [w for w in words[1:] if w.startswith("smskit")]
        assert names or words[1] == "daemon-reload", call
        assert set(names) <= {n.rsplit(".", 1)[0] for n in unit_names()}, call


@pytest.mark.skipif(not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run the PostgreSQL blocks")
@pytest.mark.skipif(not (shutil.which("pg_dump") and shutil.which("pg_restore")),
                    reason="pg_dump and pg_restore are not installed")
def test_the_postgresql_blocks_run(machine: Tuple[Path, Dict[str, str]]) -> None:
    root, env = machine
    assert PG_URL is not None
    short = "postgres://" + PG_URL.split("://", 1)[1]
    for block in tagged("run-postgres"):
        assert DOC_PG in block.text
        run_block(block, root, env, pg_url=short)
    assert (root / "var" / "backups" / "smskit" / "smskit.dump").stat().st_size > 0


def _pyproject_extras() -> List[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return re.findall(r"^([\w-]+) = ", section, flags=re.M)


def _requirements(text: str) -> List[str]:
    """What ``pip install`` lines of ``text`` ask for (options left out)."""
    found: List[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if "pip" in " ".join(words[:1]) and "install" in words:
            found += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return found


def test_wheel_blocks_install_our_distribution() -> None:
    wheel = tagged("wheel")
    assert len(wheel) >= 2  # the install and the upgrade; .ci/run runs them on the wheel
    extras = set(_pyproject_extras())
    requirements = [r for block in wheel for r in _requirements(block.text)]
    assert requirements
    for requirement in requirements:
        match = re.fullmatch(r"smskit-sdk\[([\w,]+)\]", requirement)
        assert match, requirement
        assert set(match.group(1).split(",")) <= extras


# -- files, checked --------------------------------------------------------------------------
def _env_file() -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in files()["/etc/smskit/smskit.env"].splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_the_environment_file_loads() -> None:
    from smskit.config import Settings

    values = _env_file()
    settings = Settings.load(environ=values, config_file=None)
    assert settings.database_url == "sqlite:////var/lib/smskit/smskit.db"
    assert settings.public_url is not None and settings.public_url.startswith("https://")
    assert settings.webhook_secret and settings.get("kolmeya_token")
    assert settings.quiet_hours == "21:00-08:00"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    # The units as written, under --root (systemd resolves their paths inside it).
    root = tmp_path / "sd"
    names = unit_names()
    assert sorted(names) == ["smskit-serve.service", "smskit-worker.service"]
    for path, text in files().items():
        if path.startswith("/etc/"):
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(text, encoding="utf-8")
    executable = root / "opt" / "smskit" / "bin" / "smskit"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n", encoding="utf-8")
    executable.chmod(0o755)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                           f"--root={root}", *names], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smskit" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_the_units_run_the_two_processes_side_by_side() -> None:
    serve = shlex.split(unit_value("smskit-serve.service", "ExecStart"))
    worker = shlex.split(unit_value("smskit-worker.service", "ExecStart"))
    assert serve[0] == worker[0] == "/opt/smskit/bin/smskit"
    assert serve[1] == "serve" and worker[1] == "worker"
    cli_parses(serve[1:])
    cli_parses(worker[1:])
    for unit in unit_names():
        assert unit_value(unit, "EnvironmentFile") == "/etc/smskit/smskit.env"
        assert unit_value(unit, "User") == "smskit"
        assert unit_value(unit, "StateDirectory") == "smskit"  # /var/lib/smskit


def test_the_user_and_directories_are_the_ones_used() -> None:
    (block,) = [b for b in tagged("check") if b.tag == "check useradd"]
    words = shlex.split(block.text)
    assert words[0] == "useradd" and "smskit" in words
    assert words[words.index("--home-dir") + 1] == "/var/lib/smskit"
    install = block.text.splitlines()[1].split()
    assert "/var/lib/smskit" in install and "/var/backups/smskit" in install
    page = PAGE.read_text(encoding="utf-8")
    assert "/var/backups/smskit/smskit-$(date +%F).db" in page


def _nginx() -> str:
    return files()["/etc/nginx/conf.d/smskit.conf"]


def test_the_nginx_snippet_is_well_formed_and_agrees() -> None:
    text = "\n".join(line.split("#", 1)[0] for line in _nginx().splitlines())
    assert text.count("{") == text.count("}")
    depth = 0
    statement = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        statement += " " + stripped
        if stripped.endswith("{"):
            depth += 1
            statement = ""
        elif stripped == "}":
            depth -= 1
            assert depth >= 0
            statement = ""
        elif stripped.endswith(";"):
            statement = ""
    assert depth == 0 and not statement.strip()
    serve = shlex.split(unit_value("smskit-serve.service", "ExecStart"))
    address = f"{serve[serve.index('--host') + 1]}:{serve[serve.index('--port') + 1]}"
    assert f"server {address};" in text
    host = _env_file()["SMSKIT_PUBLIC_URL"].split("://", 1)[1]
    assert re.findall(r"server_name (\S+);", text) == [host, host]
    locations = re.findall(r"location (?:= )?(\S+) \{", text)
    assert {"/webhooks/", "/l/", "/static/", "/dashboard"} <= set(locations)
    assert "/metrics" not in locations and "/healthz" not in locations
    log_format = re.search(r"log_format smskit (.*?);", text, flags=re.S)
    assert log_format is not None
    assert "$uri" in log_format.group(1) and "$request " not in log_format.group(1)
    assert "$args" not in log_format.group(1) and "$request_uri" not in log_format.group(1)


DOCKER_INSTRUCTIONS = {"FROM", "RUN", "COPY", "USER", "WORKDIR", "ENV", "VOLUME", "EXPOSE",
                       "ENTRYPOINT", "CMD", "ARG", "LABEL", "HEALTHCHECK"}


def test_the_container_recipe_is_well_formed_and_agrees() -> None:
    import smskit

    lines = files()["Dockerfile"].replace("\\\n", " ").splitlines()
    instructions = [line.split(None, 1) for line in lines if line.strip()]
    assert instructions[0][0] == "FROM"
    assert {i[0] for i in instructions} <= DOCKER_INSTRUCTIONS
    by_name = {i[0]: i[1] for i in instructions}
    entrypoint, cmd = json.loads(by_name["ENTRYPOINT"]), json.loads(by_name["CMD"])
    assert entrypoint == ["smskit"]
    cli_parses(cmd)
    wheel = f"smskit_sdk-{smskit.__version__}-py3-none-any.whl"
    pattern = re.search(r"/tmp/dist/(smskit_sdk-\*\.whl)", by_name["RUN"])
    assert pattern is not None and fnmatch.fnmatch(wheel, pattern.group(1))
    assert "[server,postgres]" in by_name["RUN"]
    assert by_name["USER"] == "smskit"

    (run_block,) = [b for b in tagged("check") if b.tag == "check docker"]
    commands = [shlex.split(line) for line in run_block.text.splitlines() if line.strip()]
    assert all(words[0] == "docker" for words in commands)
    tag = commands[0][commands[0].index("-t") + 1]
    assert tag == f"smskit:{smskit.__version__}"
    for words in commands:
        if words[1] != "run":
            continue
        assert words[words.index("--env-file") + 1] == "/etc/smskit/smskit.env"
        assert words[words.index("-v") + 1] == "smskit-data:/var/lib/smskit"
        args = words[words.index(tag) + 1:]
        cli_parses(args or cmd)


# -- the log samples ---------------------------------------------------------------------------
WORKER_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO (worker started \(providers: "
                         r"[\w, ]+, every [\d.]+s\)|worker cycle: \w+: \d+ sent, .*|SIGTERM "
                         r"received: stopping after the current cycle|worker stopped)$")
ACCESS_LINE = re.compile(r'^INFO: {5}[\d.]+:\d+ - "(GET|POST) \S+" \d{3} [\d.]+ms$')


def test_the_worker_logs_what_the_page_shows(tmp_path: Path) -> None:
    samples = [b.text for b in page_blocks() if b.lang == "text"]
    worker_sample = [line for line in samples[1].splitlines() if line.strip()]
    assert all(WORKER_LINE.match(line) for line in worker_sample), worker_sample
    access = [line for line in samples[0].splitlines() if " - " in line]
    assert access and all(ACCESS_LINE.match(line) for line in access), access
    assert "token=********" in samples[0]

    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}
    env.update(SMSKIT_PROVIDER="loopback", SMSKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}",
               PYTHONPATH=str(ROOT / "src"))
    # far enough ahead that `smskit send` (slow to start on a loaded machine) only queues it
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=6)).isoformat()
    queued = subprocess.run([sys.executable, "-m", "smskit", "send", "11987654321", "Oi",
                             "--at", soon], env=env, capture_output=True, text=True, timeout=60)
    assert queued.returncode == 0, queued.stderr
    proc = subprocess.Popen([sys.executable, "-m", "smskit", "worker", "--interval", "0.2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: List[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:  # until the scheduled message went out (a loaded machine starts Python slowly)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(" sent" in line for line in seen):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    err = "".join(seen)
    lines = [line for line in err.splitlines() if re.match(r"^\d{4}-", line)]
    assert [WORKER_LINE.match(line) is not None for line in lines] == [True] * len(lines), lines
    assert any("worker cycle: loopback: 1 sent" in line for line in lines), err
    assert lines[-1].endswith("INFO worker stopped")
