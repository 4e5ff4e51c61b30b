"""The dashboard, its JSON and the short-link redirect of the reference server.

* ``GET /dashboard``: a page a person reads at a glance (numbers rendered by the server, charts
  drawn in the browser by the vendored uPlot; no CDN, works without internet);
* ``GET /api/stats``: the same figures as JSON (:meth:`StatsReport.as_dict`), plus
  ``provider_status``: one line per provider (circuit, queue, last balance, rate limit,
  messages moved to and from it in the range; :mod:`smskit.routing.status`);
* ``GET /l/{code}``: 302 to the URL stored for ``code`` and one click counted (``HEAD`` does not
  count); an unknown code is a 404 page. Only stored URLs are ever redirected to.
* ``GET /static/...``: the page's script, style and the vendored chart library.

Both ``?start=YYYY-MM-DD&end=YYYY-MM-DD`` (local days in ``Settings.timezone``; default the
last 30 days, at most 366) select the range. The dashboard and ``/api/stats`` need the
``dashboard_token`` setting (or, when it is unset, the webhook secret) as the password of HTTP
Basic (any user name: a browser asks for it) or as ``Authorization: Bearer <token>``. Without
either setting they answer 503. The token is never read from the URL.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING, List, Mapping, Optional, Tuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from smskit.config import Secret, Settings
from smskit.errors import SmsKitError, ValidationError
from smskit.outbox.links import CODE_PATTERN, to_uri
from smskit.routing.status import ProviderLine, provider_lines
from smskit.server import _dashboard_html as page
from smskit.store.analytics import LinkStore, StatsReport, StatsStore, local_bounds, local_day
from smskit.timeutil import zone

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "STATIC_DIR", "DashboardAuth", "dashboard_routes"]

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


class DashboardAuth:
    """Who may read the dashboard: one token, as a Basic password or a Bearer token."""

    def __init__(self, token: Optional[Secret]) -> None:
        self._token = token

    @classmethod
    def from_settings(cls, settings: Settings) -> DashboardAuth:
        """``dashboard_token``, or the webhook secret when that is unset."""
        return cls(settings.secret("dashboard_token") or settings.webhook_secret or None)

    @property
    def configured(self) -> bool:
        """Whether a token is set (without one every request is refused with 503)."""
        return bool(self._token)

    def allows(self, headers: Mapping[str, str]) -> bool:
        """Whether ``Authorization`` carries the token (Basic password or Bearer), compared
        in constant time. ``headers`` has lower-case keys."""
        if not self._token:
            return False
        presented = _presented(headers.get("authorization", ""))
        if presented is None:
            return False
        expected = self._token.reveal().encode("utf-8", "surrogatepass")
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected)


def _presented(authorization: str) -> Optional[str]:
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


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

    # -- auth and parameters ----------------------------------------------------------------
    def _denied(self, request: Request, *, html: bool) -> Optional[Response]:
        if not self.auth.configured:
            detail = ("set SMSKIT_DASHBOARD_TOKEN (or SMSKIT_WEBHOOK_SECRET) to open the "
                      "dashboard")
            if html:
                return HTMLResponse(page.message_page("Painel indisponível", detail), 503,
                                    headers=_SECURITY_HEADERS)
            return _json_error(503, "dashboard not configured", detail)
        if self.auth.allows(request.headers):
            return None
        if "authorization" in request.headers:
            client = request.client.host if request.client is not None else None
            log.warning("dashboard refused: wrong credentials from %s", client)
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
        start = _parse_day(query.get("start"), "start") or end - dt.timedelta(
            days=DEFAULT_DAYS - 1)
        if end < start:
            raise ValidationError(f"end {end.isoformat()} is before start {start.isoformat()}")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValidationError(f"the range has {(end - start).days + 1} days; at most "
                                  f"{MAX_DAYS}")
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
        agent = request.headers.get("user-agent")
        try:
            if request.method == "HEAD":  # a link preview looking: no click
                link = await run_in_threadpool(store.get_link, code)
            else:
                link = await run_in_threadpool(store.record_click, code, self.kit.clock(),
                                               agent)
        except (SmsKitError, OSError):
            log.exception("short link %s: the store did not answer", code)
            return HTMLResponse(page.message_page(
                "Tente novamente", "O serviço está indisponível no momento."), 503,
                headers={**_SECURITY_HEADERS, "Retry-After": "30"})
        target = to_uri(link.url) if link is not None else None
        if target is None:
            return _not_found()
        return RedirectResponse(target, status_code=302,
                                headers={"Cache-Control": "private, no-store",
                                         "Referrer-Policy": "no-referrer"})


def _not_found() -> Response:
    return HTMLResponse(page.message_page(
        "Link não encontrado", "Este link não existe ou foi digitado errado."), 404,
        headers=_SECURITY_HEADERS)


def _parse_day(raw: Optional[str], what: str) -> Optional[dt.date]:
    if raw is None or not raw.strip():
        return None
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError as exc:
        raise ValidationError(f"{what}: expected a date YYYY-MM-DD, got {raw[:32]!r}") from exc


def dashboard_routes(kit: SmsKit, settings: Settings) -> List[BaseRoute]:
    """The routes :func:`smskit.server.create_app` adds: dashboard, stats, links, static."""
    handlers = Dashboard(kit, settings)
    return [
        Route("/dashboard", handlers.dashboard, methods=["GET"]),
        Route("/api/stats", handlers.api_stats, methods=["GET"]),
        Route("/l/{code}", handlers.follow, methods=["GET", "HEAD"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]

