"""The dashboard, its JSON and the short-link redirect of the reference server.

* ``GET /dashboard``: a page a person reads at a glance (numbers rendered by the server, charts
  drawn in the browser by the vendored uPlot; no CDN, works without internet);
* ``GET /api/stats``: the same figures as JSON (:meth:`StatsReport.as_dict`), plus
  ``provider_status``: one line per provider (circuit, queue, last balance, rate limit,
  messages moved to and from it in the range; :mod:`smskit.routing.status`);
* ``GET /l/{code}``: 302 to the URL stored for ``code`` and one click counted (``HEAD`` does not
  count); an unknown code is a 404 page and writes nothing. Only stored URLs are ever
  redirected to.
* ``GET /static/...``: the page's script, style and the vendored chart library.

Both ``?start=YYYY-MM-DD&end=YYYY-MM-DD`` (local days in ``Settings.timezone``; default the
last 30 days, at most 366) select the range. The dashboard and ``/api/stats`` need the
``dashboard_token`` setting as the password of HTTP Basic (any user name: a browser asks for
it) or as ``Authorization: Bearer <token>``; without it they answer 503. The webhook secret
never opens them (the gateway sees it in every callback URL; see
:mod:`smskit.server.credentials`). The token is never read from the URL.

Clicks are not written one by one: ``/l/{code}`` looks the code up (a read; an unknown code
writes nothing) and hands the click to a :class:`~smskit.server.clicks.ClickBuffer`, which
writes the clicks of a few seconds in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, List, Mapping, Optional, Tuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from smskit.config import Settings
from smskit.errors import SmsKitError, ValidationError
from smskit.outbox.links import CODE_PATTERN, to_uri
from smskit.routing.status import ProviderLine, provider_lines
from smskit.server import _dashboard_html as page
from smskit.server.clicks import ClickBuffer
from smskit.server.credentials import Credential
from smskit.store.analytics import LinkStore, StatsReport, StatsStore, local_bounds, local_day
from smskit.timeutil import zone
from smskit.webhooks.throttle import REFUSALS

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "STATIC_DIR", "Dashboard", "DashboardAuth",
           "dashboard_routes"]

log = logging.getLogger(__name__)

#: Days shown when the request names no range.
DEFAULT_DAYS = 30
#: The longest range a request may ask for.
MAX_DAYS = 366
#: The page's static files, inside the package (so they ship in the wheel).
STATIC_DIR = Path(__file__).parent / "static"

_REALM = 'realm="smskit dashboard", charset="UTF-8"'
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class DashboardAuth(Credential):
    """Who may read the dashboard: the ``dashboard_token``, as a Basic password or a Bearer
    token (never the webhook secret)."""

    @classmethod
    def from_settings(cls, settings: Settings,
                      setting: str = "dashboard_token") -> DashboardAuth:
        """``dashboard_token`` (refused when it is the webhook secret)."""
        return super().from_settings(settings, setting)


def _json_error(status: int, error: str, detail: str,
                headers: Optional[Mapping[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status,
                        headers=dict(headers or {}))


class Dashboard:
    """The request handlers, bound to one :class:`SmsKit` and its settings."""

    def __init__(self, kit: SmsKit, settings: Settings) -> None:
        self.kit = kit
        self.auth = DashboardAuth.from_settings(settings)
        self.timezone = settings.timezone
        zone(self.timezone)  # an unknown zone is a ConfigurationError at start, not per request
        #: Clicks waiting to be written (made on the first click: the store is built lazily),
        #: every ``click_every`` seconds.
        self.clicks: Optional[ClickBuffer] = None
        self.click_every = 2.0

    def routes(self) -> List[BaseRoute]:
        """The dashboard, stats, short link and static routes."""
        return [
            Route("/dashboard", self.dashboard, methods=["GET"]),
            Route("/api/stats", self.api_stats, methods=["GET"]),
            Route("/l/{code}", self.follow, methods=["GET", "HEAD"]),
            Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
        ]

    async def close(self) -> None:
        """Write the clicks still waiting (the app's shutdown)."""
        if self.clicks is not None:
            await self.clicks.close()

    # -- auth and parameters ----------------------------------------------------------------
    def _denied(self, request: Request, *, html: bool) -> Optional[Response]:
        if not self.auth.configured:
            detail = ("set SMSKIT_DASHBOARD_TOKEN (a token of its own, not the webhook secret) "
                      "to open the dashboard")
            if html:
                return HTMLResponse(page.message_page("Painel indisponível", detail), 503,
                                    headers=_SECURITY_HEADERS)
            return _json_error(503, "dashboard not configured", detail)
        if self.auth.allows(request.headers):
            return None
        if "authorization" in request.headers:
            client = request.client.host if request.client is not None else None
            REFUSALS.warning(log, "dashboard", client,
                             "dashboard refused: wrong credentials from %s", client)
        challenge = {"WWW-Authenticate": f"Basic {_REALM}"} if html else {
            "WWW-Authenticate": f"Bearer {_REALM}, Basic {_REALM}"}
        if html:
            return HTMLResponse(page.message_page("Acesso restrito",
                                                  "Informe a senha do painel."), 401,
                                headers={**_SECURITY_HEADERS, **challenge})
        return _json_error(401, "unauthorized",
                           "send the dashboard token as Authorization: Bearer <token> "
                           "(or as the HTTP Basic password)", challenge)

    def date_range(self, query: Mapping[str, str]) -> Tuple[dt.date, dt.date]:
        """``start``/``end`` from the query (local days), or the last :data:`DEFAULT_DAYS`."""
        today = local_day(self.kit.clock(), self.timezone)
        end = _parse_day(query.get("end"), "end") or today
        given = _parse_day(query.get("start"), "start")
        try:
            start = given or end - dt.timedelta(days=DEFAULT_DAYS - 1)
            if end < start:
                raise ValidationError(f"end {end.isoformat()} is before start "
                                      f"{start.isoformat()}")
            if (end - start).days + 1 > MAX_DAYS:
                raise ValidationError(f"the range has {(end - start).days + 1} days; at most "
                                      f"{MAX_DAYS}")
            local_bounds(start, end, self.timezone)  # midnight after ``end`` must exist too
        except OverflowError:
            raise ValidationError(
                f"the range {given or '(30 days)'}..{end.isoformat()} is outside the calendar "
                "(years 1 to 9999)") from None
        return start, end

    def report(self, start: dt.date, end: dt.date) -> StatsReport:
        """Ask the store (call off the event loop)."""
        store = self.kit.store
        if isinstance(store, StatsStore):
            return store.dashboard_stats(start, end, self.timezone)
        # a third-party store without the aggregates: the per-day rows only
        return StatsReport(start=start, end=end, timezone=self.timezone,
                           days=store.stats_by_day(start, end, tz=self.timezone))

    def providers(self, start: dt.date, end: dt.date) -> List[ProviderLine]:
        """One line per provider: circuit, queue, balance, moves in the range (call off the
        event loop)."""
        lo, hi = local_bounds(start, end, self.timezone)
        return provider_lines(self.kit, self.kit.clock(), lo, hi)

    def _both(self, start: dt.date, end: dt.date) -> Tuple[StatsReport, List[ProviderLine]]:
        return self.report(start, end), self.providers(start, end)

    async def _report(self, request: Request) -> Tuple[
            Optional[Tuple[StatsReport, List[ProviderLine]]], Optional[str], int]:
        try:
            start, end = self.date_range(request.query_params)
        except ValidationError as exc:
            return None, str(exc), 400
        try:
            return await run_in_threadpool(self._both, start, end), None, 200
        except Exception:  # the page says "unavailable"; the log has the traceback
            log.exception("dashboard: the store could not answer the stats")
            return None, "the store did not answer; try again later", 503

    # -- routes -------------------------------------------------------------------------------
    async def api_stats(self, request: Request) -> Response:
        """``/api/stats``: the figures as JSON."""
        denied = self._denied(request, html=False)
        if denied is not None:
            return denied
        found, error, status = await self._report(request)
        if found is None:
            return _json_error(status, "bad request" if status == 400 else "store unavailable",
                               error or "")
        report, lines = found
        body = report.as_dict()
        body["provider_status"] = [line.as_dict() for line in lines]
        body["generated_at"] = self.kit.clock().isoformat()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def dashboard(self, request: Request) -> Response:
        """``/dashboard``: the page."""
        denied = self._denied(request, html=True)
        if denied is not None:
            return denied
        found, error, status = await self._report(request)
        if found is None:
            title = "Período inválido" if status == 400 else "Painel indisponível"
            return HTMLResponse(page.message_page(title, error or ""), status,
                                headers=_SECURITY_HEADERS)
        report, lines = found
        now = self.kit.clock().astimezone(zone(self.timezone))
        return HTMLResponse(page.render(report, generated_at=now, providers=lines),
                            headers=_SECURITY_HEADERS)

    async def follow(self, request: Request) -> Response:
        """``/l/{code}``: redirect to the stored URL and count the click."""
        code = str(request.path_params["code"])
        store = self.kit.store
        if not CODE_PATTERN.match(code) or not isinstance(store, LinkStore):
            return _not_found()
        try:
            link = await run_in_threadpool(store.get_link, code)  # a read; a miss writes nothing
        except (SmsKitError, OSError):
            log.exception("short link %s: the store did not answer", code)
            return HTMLResponse(page.message_page(
                "Tente novamente", "O serviço está indisponível no momento."), 503,
                headers={**_SECURITY_HEADERS, "Retry-After": "30"})
        target = to_uri(link.url) if link is not None else None
        if target is None:
            return _not_found()
        if request.method != "HEAD":  # HEAD is a link preview looking: no click
            if self.clicks is None:
                self.clicks = ClickBuffer(store, every=self.click_every)
            self.clicks.add(code, self.kit.clock(), request.headers.get("user-agent"))
        return RedirectResponse(target, status_code=302,
                                headers={"Cache-Control": "private, no-store",
                                         "Referrer-Policy": "no-referrer"})


def _not_found() -> Response:
    return HTMLResponse(page.message_page(
        "Link não encontrado", "Este link não existe ou foi digitado errado."), 404,
        headers=_SECURITY_HEADERS)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _parse_day(raw: Optional[str], what: str) -> Optional[dt.date]:
    """A ``YYYY-MM-DD`` day (only that form, on every Python: 3.11 would also take
    ``20240501`` and ``2024-W19-5``), ``None`` when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        if not _DAY.fullmatch(raw.strip()):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw.strip())
    except ValueError as exc:
        raise ValidationError(f"{what}: expected a date YYYY-MM-DD, got {raw[:32]!r}") from exc


def dashboard_routes(kit: SmsKit, settings: Settings) -> List[BaseRoute]:
    """The routes :func:`smskit.server.create_app` adds: dashboard, stats, links, static
    (without the app's shutdown, waiting clicks are written only by the buffer's own timer)."""
    return Dashboard(kit, settings).routes()
