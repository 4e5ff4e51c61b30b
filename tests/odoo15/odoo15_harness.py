"""A real Odoo 15 for the ``real_odoo`` tests, driven through ``../shared/odoo15/odoo15``.

Once per machine (reused while nothing changed): Odoo 15 is unpacked into a directory with its
Python 3.8 virtualenv (``odoo15 install``), smskit is installed into that virtualenv exactly as
``addons/sms_smskit/README.md`` tells users (``pip install '<this repository>[odoo-addon]'``),
and one template database per schema variant is made with the addons installed (``odoo15
init``: installing modules is the slow part). Each server then gets its own copy of a template
(``CREATE DATABASE ... TEMPLATE``, plus the filestore, as Odoo's own duplicate does) and is
served on a free loopback port (``odoo15 serve``; ``--workers 2`` on request).

Settings (environment):

* ``SMSKIT_ODOO15_SCRIPT``: the ``odoo15`` script (default ``../shared/odoo15/odoo15`` beside
  this repository);
* ``SMSKIT_ODOO15_DIR``: where Odoo 15 is installed (default ``$TMPDIR/smskit-odoo15``);
* ``ODOO15_PG_HOST``, ``ODOO15_PG_PORT``, ``ODOO15_PG_SUPERUSER``: the PostgreSQL the script
  uses (default ``127.0.0.1:5432``, ``postgres``).

Databases made here are named ``odoo_tpl_*`` (templates) and ``odoo_t_*`` (copies); nothing
else is touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
#: The addons directories on Odoo's addons path: the addon users install, and the stand-ins.
ADDON_PATHS = (REPO / "addons", REPO / "tests" / "odoo" / "addons")
#: The extra addons/sms_smskit/README.md installs into Odoo's virtualenv.
SMSKIT_EXTRAS = "odoo-addon"
#: ``--load`` of a server with the addon loaded server-wide (see addons/sms_smskit/README.md).
SERVER_WIDE = "base,web,sms_smskit"
#: Schema variant -> the modules its databases have installed.
VARIANTS: Mapping[str, Tuple[str, ...]] = {
    # the users' set-up: stock sms, their sms_base_sr (sms.message), ChatRoom, the addon
    # (and smskit_conflict_probe, inert until a test arms it: tests/odoo/addons)
    "sr": ("sms", "sms_base_sr", "whatsapp_connector", "sms_smskit", "smskit_conflict_probe"),
    # no sms.message: smskit falls back to stock sms.sms
    "stock": ("sms", "whatsapp_connector", "sms_smskit", "smskit_conflict_probe"),
    # the users' set-up with SMS marketing (sms_smskit_mass_mailing comes by itself with
    # mass_mailing_sms, as sms_smskit_chatroom does with the ChatRoom)
    "mass": ("sms", "sms_base_sr", "whatsapp_connector", "mass_mailing_sms", "sms_smskit"),
    # SMS marketing without sms.message (benchmarks/bench_odoo15_mailing.py's supplement)
    "mass_stock": ("sms", "mass_mailing_sms", "sms_smskit"),
}
ADMIN_LOGIN = ADMIN_PASSWORD = "admin"  # what the odoo15 script's databases use
_SERVE_TIMEOUT = 180.0
_INIT_TIMEOUT = 900.0


class Unavailable(Exception):
    """A prerequisite of the real Odoo 15 is missing (the script, Python 3.8, PostgreSQL)."""


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_digest(paths: Sequence[Path], *extra: str) -> str:
    """A digest of every file under ``paths`` (names and contents) and of ``extra``."""
    digest = hashlib.sha256()
    for text in extra:
        digest.update(text.encode() + b"\0")
    for root in paths:
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _copy_of_a_gone_session(db: str) -> bool:
    """Whether ``db`` is a copy made by a test session whose process is gone."""
    match = re.match(r"odoo_t_\w+?_(\d+)_\d+$", db)
    if match is None:
        return False
    return not _alive(int(match.group(1)))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for a parent that does not reap it counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class Odoo15:
    """One Odoo 15 installation and the PostgreSQL it uses."""

    def __init__(self, script: Path, directory: Path, environ: Mapping[str, str]) -> None:
        self.script = script
        self.directory = directory
        # Odoo's Python must import the smskit pip installed into its venv, never this tree
        # (a developer's PYTHONPATH=src would otherwise leak into it)
        self.environ = {k: v for k, v in environ.items()
                        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        self.pg_host = self.environ.get("ODOO15_PG_HOST", "127.0.0.1")
        self.pg_port = self.environ.get("ODOO15_PG_PORT", "5432")
        self.pg_superuser = self.environ.get("ODOO15_PG_SUPERUSER", "postgres")
        self._counter = 0

    def __repr__(self) -> str:
        return f"Odoo15({str(self.directory)!r}, pg={self.pg_host}:{self.pg_port})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Odoo15:
        """The installation the environment names (see the module docstring)."""
        script = Path(environ.get("SMSKIT_ODOO15_SCRIPT")
                      or REPO.parent / "shared" / "odoo15" / "odoo15")
        directory = Path(environ.get("SMSKIT_ODOO15_DIR")
                         or Path(tempfile.gettempdir()) / "smskit-odoo15")
        return cls(script.resolve(), directory.resolve(), environ)

    # -- prerequisites and the one-time set-up ------------------------------------------------
    def check(self) -> None:
        """Raise :class:`Unavailable` naming what is missing."""
        if not (self.script.is_file() and os.access(self.script, os.X_OK)):
            raise Unavailable(f"no odoo15 script at {self.script} (set SMSKIT_ODOO15_SCRIPT)")
        if shutil.which("psql") is None:
            raise Unavailable("psql is not installed (the odoo15 script needs it)")
        try:
            self.psql("SELECT 1", timeout=15)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(
                f"PostgreSQL at {self.pg_host}:{self.pg_port} (user {self.pg_superuser}) does "
                f"not answer (set ODOO15_PG_HOST/ODOO15_PG_PORT): {_tail(exc)}") from exc

    def prepare(self) -> None:
        """Install Odoo 15 and smskit into its virtualenv, once (both reused when ready)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.lock():
            result = self.run("install", str(self.directory), timeout=1800)
            if result.returncode != 0:
                raise Unavailable(f"odoo15 install failed: {_tail(result)}")
            self._install_smskit()
            self._drop_stale_copies()

    def _install_smskit(self) -> None:
        stamp = self.directory / "venv" / ".smskit-tests-installed"
        wanted = tree_digest([REPO / "pyproject.toml", REPO / "src"])
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return
        # exactly what addons/sms_smskit/README.md tells users to run in Odoo's virtualenv
        result = subprocess.run(
            [str(self.directory / "venv" / "bin" / "pip"), "install", "-q",
             "--disable-pip-version-check", f"{REPO}[{SMSKIT_EXTRAS}]"],
            capture_output=True, text=True, timeout=900, check=False, env=self.environ)
        if result.returncode != 0:
            raise RuntimeError(f"pip install of smskit into Odoo's venv failed: {_tail(result)}")
        stamp.write_text(wanted)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise set-up and database copies between test sessions sharing the directory."""
        with open(self.directory / ".smskit-tests.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- commands ----------------------------------------------------------------------------
    def run(self, *args: str, stdin: Optional[str] = None, timeout: float = _INIT_TIMEOUT,
            extra_env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess[str]:
        """``odoo15 <args>``; never raises on a non-zero exit."""
        env = dict(self.environ, **(extra_env or {}))
        return subprocess.run([str(self.script), *args], input=stdin, capture_output=True,
                              text=True, timeout=timeout, env=env, check=False)

    def psql(self, sql: str, db: str = "postgres", timeout: float = 120) -> str:
        """Run SQL as the PostgreSQL superuser; its unaligned output."""
        result = subprocess.run(
            ["psql", "-h", self.pg_host, "-p", self.pg_port, "-U", self.pg_superuser, "-d", db,
             "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=timeout, check=True)
        return result.stdout.strip()

    def databases(self, like: str) -> List[str]:
        """Names of the databases matching the SQL ``LIKE`` pattern."""
        out = self.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{like}'")
        return [line for line in out.splitlines() if line]

    def addons_args(self) -> List[str]:
        return [str(p) for p in ADDON_PATHS]

    # -- databases ---------------------------------------------------------------------------
    def template(self, variant: str) -> str:
        """The template database of ``variant``, made when missing or out of date."""
        modules = VARIANTS[variant]
        digest = tree_digest(list(ADDON_PATHS), ",".join(modules), self.script.read_text(),
                             str(self.script.with_name("odoo15-community-trimmed.tgz")
                                 .stat().st_size))
        # one set of templates per installation: the filestore they need lives in it
        prefix = f"odoo_tpl_{variant}_{hashlib.sha256(bytes(self.directory)).hexdigest()[:6]}_"
        name = prefix + digest[:10]
        with self.lock():
            if self.databases(name):
                return name
            for old in self.databases(prefix.replace("_", "\\_") + "%"):
                self.drop_database(old)
            building = name + "_new"
            # left behind when PostgreSQL was reset under a kept directory (CI keeps /tmp
            # between runs but starts a new cluster): files of databases that no longer exist
            self.drop_database(building)
            shutil.rmtree(self.filestore(name), ignore_errors=True)
            result = self.run("init", str(self.directory), building, ",".join(modules),
                              *self.addons_args())
            if result.returncode != 0:
                self.drop_database(building)
                raise RuntimeError(f"odoo15 init of {variant} failed: {_tail(result)}")
            self.psql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            store = self.filestore(building)
            if store.is_dir():
                store.rename(self.filestore(name))
        return name

    def new_database(self, variant: str) -> str:
        """A fresh copy of the template of ``variant`` (with its filestore)."""
        template = self.template(variant)
        self._counter += 1
        name = f"odoo_t_{variant}_{os.getpid()}_{self._counter}"
        with self.lock():
            self.drop_database(name)
            self.psql(f'CREATE DATABASE "{name}" WITH TEMPLATE "{template}" OWNER odoo')
            if self.filestore(template).is_dir():
                shutil.copytree(self.filestore(template), self.filestore(name))
        return name

    def drop_database(self, name: str) -> None:
        """Drop one of our databases (its remaining connections closed) and its filestore."""
        if not name.startswith(("odoo_t_", "odoo_tpl_")):
            raise ValueError(f"not a database of these tests: {name}")
        self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        shutil.rmtree(self.filestore(name), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.sidecar(name).unlink()

    def filestore(self, db: str) -> Path:
        return self.directory / "data" / "filestore" / db

    def sidecar(self, db: str) -> Path:
        """The addon's default sidecar SQLite file for ``db``."""
        return self.directory / "data" / "smskit" / f"{db}.db"

    def _drop_stale_copies(self) -> None:
        """Servers and copies left behind by test sessions that are gone (killed, say)."""
        for pid_file in self.directory.glob("serve-*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            db = args[args.index(b"-d") + 1].decode() if b"-d" in args[:-1] else ""
            if _copy_of_a_gone_session(db):
                _stop_pid(pid)
        for name in self.databases("odoo\\_t\\_%"):
            if _copy_of_a_gone_session(name):
                self.drop_database(name)
        # files of our databases PostgreSQL no longer has (a new cluster under a kept directory)
        known = set(self.databases("odoo\\_t%"))
        orphans = [p for p in (self.directory / "data" / "filestore").glob("odoo_t*")
                   if p.name not in known]
        orphans += [p for p in (self.directory / "data" / "smskit").glob("odoo_t*.db")
                    if p.stem not in known]
        for path in orphans:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        day_ago = time.time() - 86400
        for log in self.directory.glob("serve-*.log"):
            if log.stat().st_mtime < day_ago:
                log.unlink()

    # -- running Odoo ------------------------------------------------------------------------
    def serve(self, db: str, *, workers: bool = False, server_wide: bool = False) -> Server:
        """Serve ``db`` on a free loopback port (``--workers 2`` and a longpolling port when
        asked; with ``server_wide`` the addon is among the server-wide modules). No cron
        runs: tests trigger the cron themselves."""
        port = free_port()
        longpolling: Optional[int] = None
        args = "--max-cron-threads 0"
        if workers:
            longpolling = free_port()
            args = f"--workers 2 --longpolling-port {longpolling} {args}"
        if server_wide:
            args = f"--load {SERVER_WIDE} {args}"
        result = self.run("serve", str(self.directory), db, str(port), *self.addons_args(),
                          extra_env={"ODOO15_ARGS": args}, timeout=_SERVE_TIMEOUT)
        log = self.directory / f"serve-{port}.log"
        if result.returncode != 0:
            pid_file = self.directory / f"serve-{port}.pid"
            if pid_file.is_file():
                _stop_pid(int(pid_file.read_text().strip() or 0))
            raise RuntimeError(f"odoo15 serve {db} failed: {_tail(result)}\n"
                               f"{_tail_text(log.read_text(errors='replace'))}")
        pid = int(result.stdout.strip().splitlines()[-1])
        return Server(self, db, port, pid, log, workers, longpolling_port=longpolling,
                      server_wide=server_wide)

    def shell(self, db: str, code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``odoo-bin shell`` on ``db`` running ``code`` (``env`` is bound)."""
        with self.lock():  # the script's shell/test/init share one config file
            return self.run("shell", str(self.directory), db, *self.addons_args(), stdin=code,
                            timeout=timeout)

    def test(self, db: str, modules: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """``odoo15 test``: install ``modules`` into a new ``db`` and run their Odoo tests."""
        with self.lock():  # the script's shell/test/init share one config file
            return self.run("test", str(self.directory), db, ",".join(modules),
                            *self.addons_args(), timeout=_INIT_TIMEOUT)


class Server:
    """A served database: its URL, log and RPC helpers."""

    def __init__(self, odoo: Odoo15, db: str, port: int, pid: int, log: Path,
                 workers: bool, *, longpolling_port: Optional[int] = None,
                 server_wide: bool = False) -> None:
        self.odoo = odoo
        self.db = db
        self.port = port
        self.pid = pid
        self.log = log
        self.workers = workers
        #: The longpolling (gevent) process's port in ``--workers`` mode.
        self.longpolling_port = longpolling_port
        #: Whether the addon is loaded server-wide (``--load base,web,sms_smskit``).
        self.server_wide = server_wide
        self._uid: Optional[int] = None

    def __repr__(self) -> str:
        return (f"Server({self.db!r}, port={self.port}, workers={self.workers}, "
                f"server_wide={self.server_wide})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop Odoo (and its workers) and wait until the port is free; the log stays (a day)."""
        _stop_pid(self.pid)
        for leftover in (f"serve-{self.port}.pid", f"odoo-{self.port}.conf"):
            (self.odoo.directory / leftover).unlink(missing_ok=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)

    # -- the log -----------------------------------------------------------------------------
    def log_mark(self) -> int:
        """Where the log ends now (see :meth:`log_since`)."""
        return self.log.stat().st_size

    def log_since(self, mark: int) -> str:
        """What Odoo logged after ``mark``."""
        with open(self.log, "rb") as handle:
            handle.seek(mark)
            return handle.read().decode("utf-8", errors="replace")

    # -- RPC ---------------------------------------------------------------------------------
    def odoorpc(self) -> Any:
        """An odoorpc (JSON-RPC) session logged in as admin."""
        import odoorpc

        client = odoorpc.ODOO("127.0.0.1", port=self.port, timeout=120)
        client.login(self.db, ADMIN_LOGIN, ADMIN_PASSWORD)
        return client

    def uid(self) -> int:
        if self._uid is None:
            common = xmlrpc.client.ServerProxy(f"{self.url}/xmlrpc/2/common")
            self._uid = int(common.login(self.db, ADMIN_LOGIN, ADMIN_PASSWORD))
        return self._uid

    def xmlrpc(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """One ``execute_kw`` over XML-RPC (what the users' scripts and integrations use)."""
        proxy = xmlrpc.client.ServerProxy(f"{self.url}/xmlrpc/2/object")
        return proxy.execute_kw(self.db, self.uid(), ADMIN_PASSWORD, model, method,
                                list(args), kwargs)

    def set_params(self, params: Mapping[str, Optional[str]]) -> None:
        """Set (or, with ``None``, remove) ``ir.config_parameter`` rows."""
        for key, value in params.items():
            self.xmlrpc("ir.config_parameter", "set_param", key, value or False)

    def shell(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run Python in ``odoo-bin shell`` on this server's database."""
        return self.odoo.shell(self.db, code)


def _stop_pid(pid: int, timeout: float = 30.0) -> None:
    if pid <= 0 or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _tail(what: Any, lines: int = 40) -> str:
    if isinstance(what, (subprocess.CompletedProcess, subprocess.CalledProcessError)):
        text = f"exit {what.returncode}\n{what.stdout}\n{what.stderr}"
    else:
        text = str(what)
    return _tail_text(text, lines)


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])

