"""Helpers every benchmark shares: figures, child processes, servers on loopback, test data.

Each benchmark module has ``run(quick: bool) -> List[Figure]`` and runs what it measures in a
child process (``python benchmarks/<module>.py <role> <json args>``), so a figure such as the
peak RSS belongs to the measured work alone and servers never share its GIL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import attrs
import httpx

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
#: What a child prints before its JSON answer, so stray output cannot be mistaken for it.
ANSWER = "BENCH-ANSWER "

#: Brazilian area codes (DDD) the generated numbers use.
DDDS = (11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28, 31, 32, 33, 34, 35, 37, 38,
        41, 42, 43, 44, 45, 46, 47, 48, 49, 51, 53, 54, 55, 61, 62, 63, 64, 65, 66, 67, 68, 69,
        71, 73, 74, 75, 77, 79, 81, 82, 83, 84, 85, 86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97,
        98, 99)

#: The campaign template of the dispatch benchmark (pt-BR: accents make it UCS-2, 2 parts).
TEMPLATE = ("Olá {{ nome }}, sua fatura de R$ {{ valor }} vence em {{ vencimento }}. "
            "Pague pelo app ou pelo código de barras. Dúvidas? Responda esta mensagem.")
FIRST_NAMES = ("Ana", "João", "Maria", "José", "Antônio", "Francisca", "Luíza", "Conceição",
               "Sebastião", "Raimundo", "Gabriel", "Letícia", "Caio", "Bruna", "Thaís")


@attrs.frozen
class Figure:
    """One measured figure: ``RESULT <name> <value> <unit>``, with its goal when it has one."""

    name: str
    value: float
    unit: str
    goal: str = ""
    met: Optional[bool] = None
    note: str = ""

    def result_line(self) -> str:
        """The machine-readable line."""
        return f"RESULT {self.name} {format_value(self.value)} {self.unit}"


def format_value(value: float) -> str:
    """A figure's value: integers plainly, others with at most 3 significant decimals."""
    if float(value).is_integer():
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def log(text: str) -> None:
    """Progress on stderr (stdout carries the table and the RESULT lines)."""
    print(text, file=sys.stderr, flush=True)


# -- test data --------------------------------------------------------------------------------
def phone_for(i: int) -> str:
    """The ``i``-th distinct Brazilian mobile number, written as people type them."""
    ddd = DDDS[i % len(DDDS)]
    number = 60_000_000 + i  # unique for i < 40 million
    text = f"9{number}"
    form = i % 3
    if form == 0:
        return f"({ddd}) {text[:5]}-{text[5:]}"
    if form == 1:
        return f"55{ddd}{text}"
    return f"+55 {ddd} {text[:5]}-{text[5:]}"


def e164_for(i: int) -> str:
    """The E.164 form of :func:`phone_for`."""
    return f"+55{DDDS[i % len(DDDS)]}9{60_000_000 + i}"


def row_for(i: int) -> Dict[str, str]:
    """One CSV-like recipient row for :data:`TEMPLATE`."""
    mixed = (i * 2_654_435_761) % 4_294_967_296  # Knuth's multiplicative hash: spread, cheap
    cents = 1_000 + mixed % 99_000
    return {
        "phone": phone_for(i),
        "nome": FIRST_NAMES[i % len(FIRST_NAMES)],
        "valor": f"{cents // 100},{cents % 100:02d}",
        "vencimento": f"{1 + mixed % 28:02d}/{1 + (mixed >> 8) % 12:02d}",
    }


def rows(n: int, start: int = 0) -> Iterator[Dict[str, str]]:
    """``n`` recipient rows, generated one at a time (never a list)."""
    for i in range(start, start + n):
        yield row_for(i)


def rows_with_e164(n: int, start: int) -> List[Dict[str, str]]:
    """``n`` rows of :func:`row_for` from ``start``, each with its ``e164`` (for a child that
    creates the partners itself, e.g. an Odoo shell)."""
    return [dict(row_for(i), e164=e164_for(i)) for i in range(start, start + n)]


# -- processes ----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (up to the hard
    limit); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def load_text() -> str:
    """The machine's load average now (1, 5 and 15 minutes), to print next to a figure."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of a child: no ``SMSKIT_*`` from the caller's shell, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}
    env["PYTHONHASHSEED"] = "0"
    env.update(extra or {})
    return env


def run_child(script: str, role: str, args: Mapping[str, Any], *,
              timeout: float = 600.0) -> Dict[str, Any]:
    """Run ``benchmarks/<script> <role> <json args>`` and return the JSON it answers."""
    command = [PYTHON, str(HERE / script), role, json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=child_env(), check=False)
    found = read_answer(done.stdout)
    if found is not None:
        return found
    raise RuntimeError(f"{script} {role} failed (exit {done.returncode}):\n"
                       f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def read_answer(output: str) -> Optional[Dict[str, Any]]:
    """The JSON of the last :data:`ANSWER` line of a child's ``output``, or ``None``."""
    for line in reversed(output.splitlines()):
        if line.startswith(ANSWER):
            return dict(json.loads(line[len(ANSWER):]))
    return None


def answer(data: Mapping[str, Any]) -> None:
    """What a child prints last: its result as one JSON line."""
    print(ANSWER + json.dumps(data), flush=True)


def child_main(roles: Mapping[str, Callable[[Dict[str, Any]], Mapping[str, Any]]]) -> None:
    """Entry point of a benchmark module run as a child: ``<role> <json args>``."""
    role, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    answer(roles[role](json.loads(raw)))


class Process:
    """A server in a child process: its base URL, and ``stop()`` (SIGTERM, then SIGKILL)."""

    def __init__(self, popen: subprocess.Popen[bytes], base_url: str) -> None:
        self.popen = popen
        self.base_url = base_url

    def stop(self) -> None:
        """Stop the child and wait for it."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def wait_until_up(url: str, popen: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers (any status), or fail if the child dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            raise RuntimeError(f"server process exited with {popen.returncode} before {url} "
                               "answered")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def server_process(command: Sequence[str], probe_path: str, port: int, *,
                   env: Optional[Mapping[str, str]] = None,
                   cwd: Optional[str] = None) -> Iterator[Process]:
    """Run a server command in a child process; yield it once ``probe_path`` answers."""
    popen = subprocess.Popen(list(command), env=child_env(env), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=cwd)
    process = Process(popen, f"http://127.0.0.1:{port}")
    try:
        wait_until_up(process.base_url + probe_path, popen)
        yield process
    finally:
        process.stop()


SIM_TOKEN = "bench-token"


@contextlib.contextmanager
def simulator(**config: Any) -> Iterator[Process]:
    """The Kolmeya simulator under uvicorn in its own process (its CPU is not ours).

    ``config`` holds :class:`SimulatorConfig` settings (JSON values); the API is at
    ``process.base_url + "/api/v1"``, the control endpoints at ``/_sim/``.
    """
    port = free_port()
    settings = {"token": SIM_TOKEN, "auto_progress": False, **config}
    code = ("import json, sys\n"
            "from smskit_kolmeya.testing.simulator import main\n"
            "main('127.0.0.1', int(sys.argv[1]), log_level='warning', "
            "**json.loads(sys.argv[2]))\n")
    with server_process([PYTHON, "-c", code, str(port), json.dumps(settings)], "/_sim/stats",
                        port) as process:
        yield process


def kit_settings(sim_url: str, **extra: str) -> Dict[str, str]:
    """Settings (as keyword strings) of a kit sending through the simulator at ``sim_url``."""
    return {"provider": "kolmeya", "kolmeya_base_url": f"{sim_url}/api/v1",
            "kolmeya_token": SIM_TOKEN, **extra}


def percentile(values: List[float], share: float) -> float:
    """The ``share`` percentile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]
