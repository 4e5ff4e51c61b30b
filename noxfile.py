"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``; ``odoo`` (not run by
default) runs the tests against a real Odoo 15."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
PYTHONS = ["3.8", "3.11"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (the same command as the README's)."""
    session.install("-e", ".[test,browser]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def odoo(session: nox.Session) -> None:
    """The real_odoo tests: a real Odoo 15 on Python 3.8 from ../shared/odoo15 (docs/odoo.md)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "real_odoo", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff over sources, tests, benchmarks, the addon, the docs tools and the examples."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py", "addons", "docs_tools",
                "examples")


@nox.session(python="3.8")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ and the worked plugin, run on Python 3.8 against 3.8's packages
    (the users' Odoo 15)."""
    session.install("-e", ".[test,lint]")
    session.run("mypy")
    session.run("mypy", "examples/smskit-acme/src")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (broken links and API refs fail)."""
    session.install("-e", ".[docs,server]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")
