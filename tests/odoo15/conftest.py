"""Fixtures of the ``real_odoo`` tests: a real Odoo 15 on Python 3.8 (see odoo15_harness.py).

They are deselected by the default ``pytest`` run (``addopts``: ``-m "not real_odoo"``) and run
with ``pytest -m real_odoo`` (``.ci/run`` does, once). Without the ``odoo15`` script or
PostgreSQL they skip, naming what is missing; with ``SMSKIT_REQUIRE_REAL_ODOO=1`` (CI) a
missing prerequisite fails them instead.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, List, Tuple

import pytest
from odoo15_harness import Odoo15, Server, Unavailable
from odoo15_smskit import SIM_TOKEN

from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig


def _required() -> bool:
    return os.environ.get("SMSKIT_REQUIRE_REAL_ODOO", "").strip() == "1"


@pytest.fixture(scope="session")
def odoo15() -> Odoo15:
    """The Odoo 15 installation, with smskit installed into its virtualenv."""
    odoo = Odoo15.from_environ()
    try:
        odoo.check()
        odoo.prepare()
    except Unavailable as exc:
        if _required():
            # not pytest.fail: an xfail-marked test would swallow that as an expected failure
            pytest.exit(f"SMSKIT_REQUIRE_REAL_ODOO=1 but no real Odoo 15: {exc}", returncode=1)
        pytest.skip(f"no real Odoo 15: {exc}")
    return odoo


class Servers:
    """Starts servers on fresh database copies; stops them and drops the copies."""

    def __init__(self, odoo: Odoo15) -> None:
        self.odoo = odoo
        self.running: List[Server] = []

    def start(self, variant: str = "sr", *, workers: bool = False,
              server_wide: bool = False) -> Server:
        db = self.odoo.new_database(variant)
        try:
            server = self.odoo.serve(db, workers=workers, server_wide=server_wide)
        except BaseException:
            self.odoo.drop_database(db)
            raise
        self.running.append(server)
        return server

    def stop(self, server: Server) -> None:
        if server in self.running:
            self.running.remove(server)
        server.stop()
        self.odoo.drop_database(server.db)

    def stop_all(self) -> None:
        for server in list(self.running):
            self.stop(server)


@pytest.fixture(scope="session")
def odoo_servers(odoo15: Odoo15) -> Iterator[Servers]:
    servers = Servers(odoo15)
    yield servers
    servers.stop_all()


def _module_server(variant: str, workers: bool = False,
                   server_wide: bool = False) -> Callable[..., Iterator[Server]]:
    def fixture(odoo_servers: Servers) -> Iterator[Server]:
        server = odoo_servers.start(variant, workers=workers, server_wide=server_wide)
        yield server
        odoo_servers.stop(server)

    how = [what for what, on in (("--workers 2", workers),
                                 ("the addon loaded server-wide", server_wide)) if on]
    fixture.__doc__ = (f"A served copy of the {variant!r} template for one test module"
                       f"{' (' + ', '.join(how) + ')' if how else ''}.")
    return fixture


odoo_sr = pytest.fixture(scope="module", name="odoo_sr")(_module_server("sr"))
odoo_stock = pytest.fixture(scope="module", name="odoo_stock")(_module_server("stock"))
odoo_mass = pytest.fixture(scope="module", name="odoo_mass")(_module_server("mass"))
odoo_sr_workers = pytest.fixture(scope="module", name="odoo_sr_workers")(
    _module_server("sr", workers=True))
odoo_sr_server_wide = pytest.fixture(scope="module", name="odoo_sr_server_wide")(
    _module_server("sr", server_wide=True))


@pytest.fixture(scope="module")
def kolmeya_for_odoo() -> Iterator[Tuple[KolmeyaSimulator, str]]:
    """A Kolmeya simulator on loopback (every message delivered) and its API base URL."""
    simulator = KolmeyaSimulator(SimulatorConfig(token=SIM_TOKEN, seed=1, outcomes={3: 1.0}))
    with serve_in_thread(simulator.app) as base_url:
        try:
            yield simulator, f"{base_url}/api/v1"
        finally:
            simulator.close()
