"""Run smskit's benchmarks: a readable table, then one ``RESULT <name> <value> <unit>`` line per
figure.

::

    pip install -r benchmarks/requirements.txt     # the segments peers: smsutil, gsm0338
    python benchmarks/run.py                        # everything, full size (< 12 min, 2 cores)
    python benchmarks/run.py --only dispatch,faults --quick
    python benchmarks/run.py --profile              # where a bulk send spends its time

Benchmarks: ``dispatch``, ``webhooks``, ``segments``, ``faults``, ``failover``, ``safety``,
``dashboard``, ``odoo``, ``odoo15``, ``odoo15_mailing`` (a real Odoo 15: skipped, saying why,
where there is none; see each ``bench_*.py``).
Every comparison runs both sides in the same run, on the same machine. Servers and measured
work run in child processes on 127.0.0.1 only.

And ``scaleout``: it needs a PostgreSQL it may empty (``SMSKIT_BENCH_POSTGRES_URL``; skipped,
saying why, without one) and sends ``--scaleout-n`` messages, 200,000 by default.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_segments
import common
from common import Figure

#: Benchmark name -> its module (imported only when chosen), in the order they run.
BENCHMARKS = {
    "dispatch": "bench_dispatch",
    "webhooks": "bench_webhooks",
    "segments": "bench_segments",
    "faults": "bench_faults",
    "failover": "bench_failover",
    "safety": "bench_safety",
    "dashboard": "bench_dashboard",
    "scaleout": "bench_scaleout",
    "odoo": "bench_odoo",
    "odoo15": "bench_odoo15",
    "odoo15_mailing": "bench_odoo15_mailing",
}


def runner(name: str) -> Callable[[bool], List[Figure]]:
    """The ``run(quick)`` function of the benchmark ``name``."""
    module = importlib.import_module(BENCHMARKS[name])
    run: Callable[[bool], List[Figure]] = module.run
    return run


def machine() -> str:
    """CPU count and model, OS and Python: what the figures were measured on."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} x {model}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()} ({platform.python_implementation()})")


def table(figures: List[Figure]) -> str:
    """The figures as an aligned text table."""
    rows = [("figure", "value", "unit", "goal", "met", "note")]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.name, common.format_value(f.value), f.unit, f.goal, met, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for k, r in enumerate(rows):
        cells = [r[i].ljust(widths[i]) if i != 1 else r[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells) + "  " + r[5])
        if k == 0:
            lines.append("-" * (sum(widths) + 2 * 5 + 4))
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    """Parse the options, run the chosen benchmarks, print the table and the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="",
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of the harness, not figures to record")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of a 20,000-message bulk send and exit")
    parser.add_argument("--scaleout-n", type=int, default=None,
                        help="messages of the scaleout benchmark (default 200,000)")
    options = parser.parse_args(argv)
    if options.scaleout_n is not None:
        os.environ["BENCH_SCALEOUT_N"] = str(options.scaleout_n)
    if options.profile:
        print(importlib.import_module("bench_dispatch").profile(quick=options.quick))
        return 0
    chosen = [name.strip() for name in options.only.split(",") if name.strip()] or list(
        BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    if "segments" in chosen and not bench_segments.peers_available():
        print(f"error: {bench_segments.INSTALL_HINT}\n(or leave it out: --only "
              f"{','.join(n for n in chosen if n != 'segments') or 'dispatch'})",
              file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/run.py {' '.join(argv)}".rstrip())
    figures: List[Figure] = []
    started = time.monotonic()
    for name in chosen:
        began = time.monotonic()
        figures.extend(runner(name)(options.quick))
        common.log(f"{name}: done in {time.monotonic() - began:.0f} s")
    print(f"total: {time.monotonic() - started:.0f} s{' (--quick)' if options.quick else ''}")
    print()
    print(table(figures))
    print()
    for figure in figures:
        print(figure.result_line())
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
