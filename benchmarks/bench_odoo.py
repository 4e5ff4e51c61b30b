"""``odoo``: JSON-RPC round trips to Odoo per 1,000 messages of a bulk send.

Measured by :func:`smskit_odoo.bench.odoo_rpc_per_1000` against the fake Odoo on loopback (the
connection, login and schema detection, once per process, are warmed up and not counted).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure


def run(quick: bool = False) -> List[Figure]:
    """The round trips of one bulk send of 1,000 messages (the same with ``quick``)."""
    from smskit_odoo.bench import measure_bulk_rpc

    common.log("odoo: a bulk send of 1,000 messages through the fake Odoo ...")
    result = measure_bulk_rpc(1000)
    per_1000 = result.round_trips * 1000 / result.messages
    calls = ", ".join(f"{name} {count}" for name, count in sorted(result.by_call.items()))
    return [Figure("odoo_rpc_per_1000", per_1000, "round trips", goal="<= 10",
                   met=per_1000 <= 10, note=calls)]
