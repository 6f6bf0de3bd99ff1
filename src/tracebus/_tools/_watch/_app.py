"""The watch's web application (Starlette): two pages, their event streams, their assets.

Each page gets its updates as Server-Sent Events: the runs list from the shared ``Board``,
a run's page from a ``RunFeed`` of its own, each polled every ``PUSH`` seconds, so however
many events a run writes a page gets at most one update per ``PUSH``. A stream begins with
the whole state (``reset``): a page reconnecting after the watch restarted is whole again.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..._token import is_loopback, token_matches
from .._timeline import renderer_script
from ._board import Board
from ._live import PUSH, RunFeed, encode
from ._paths import Roots

#: Seconds without an update after which a stream sends a comment, to notice a gone page.
KEEP_ALIVE = 15.0
COOKIE = "tracebus_watch_token"

_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text("utf-8")


def _assets() -> dict[str, tuple[str, str]]:
    """The page's script and style, and the timeline's renderer: the one ``tracebus
    timeline``'s page holds, so both pages draw a run alike."""
    return {
        "watch.js": (_asset("watch.js"), _JS),
        "watch.css": (_asset("watch.css"), _CSS),
        "timeline.js": (renderer_script(), _JS),
    }


def create_app(roots: Roots, *, token: str | None, loopback: bool) -> ASGIApp:
    """The application serving the runs under ``roots``; with ``token``, only to requests
    that present it; bound to a ``loopback`` address, only to requests naming a loopback
    host (no other site's page can reach it through a name that resolves to 127.0.0.1)."""
    board = Board(roots)
    pages = {name: _asset(f"{name}.html") for name in ("runs", "run")}
    assets = _assets()

    async def runs_page(request: Request) -> Response:
        return Response(pages["runs"], media_type="text/html", headers=_SECURITY)

    async def run_page(request: Request) -> Response:
        if _trace(roots, request) is None:
            return _not_found()
        return Response(pages["run"], media_type="text/html", headers=_SECURITY)

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            return _not_found()
        return Response(found[0], media_type=found[1], headers=_SECURITY)

    async def runs_events(request: Request) -> Response:
        return _stream(_runs_updates(board))

    async def run_events(request: Request) -> Response:
        trace = _trace(roots, request)
        if trace is None:
            return _not_found()
        return _stream(_run_updates(RunFeed(trace)))

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/run/{root}/{path:path}", run_page),
            Route("/events/runs", runs_events),
            Route("/events/run/{root}/{path:path}", run_events),
            Route("/static/{name}", asset),
        ]
    )
    return _Guard(app, token, loopback)


def _trace(roots: Roots, request: Request) -> Any:
    return roots.trace_at(request.path_params["root"], request.path_params["path"])


def _not_found() -> Response:
    return PlainTextResponse("no such run here", status_code=404, headers=_SECURITY)


def _stream(updates: AsyncIterator[bytes]) -> Response:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(updates, media_type="text/event-stream", headers=headers)


async def _runs_updates(board: Board) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    shown = -1
    quiet = 0.0
    while True:
        await board.refresh()
        if board.version != shown:
            shown = board.version
            quiet = 0.0
            yield b"data: " + board.encoded + b"\n\n"
        elif (quiet := quiet + PUSH) >= KEEP_ALIVE:
            quiet = 0.0
            yield b": still here\n\n"
        await anyio.sleep(PUSH)


async def _run_updates(feed: RunFeed) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 1000\n\n"
        quiet = 0.0
        while True:
            update = await anyio.to_thread.run_sync(feed.poll)
            if update is not None:
                quiet = 0.0
                yield b"data: " + encode(update) + b"\n\n"
            elif (quiet := quiet + feed.pause) >= KEEP_ALIVE:
                quiet = 0.0
                yield b": still here\n\n"
            await anyio.sleep(feed.pause)
    finally:
        feed.close()


class _Guard:
    """Refuses requests for another host name (on loopback) or without the token; a page
    opened with ``?token=`` gets it as a cookie (its event streams send it back) and is sent
    on to the same address without it."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback
        # the cookie holds a digest of the token: any token, whatever its characters, fits
        self._pass = hashlib.sha256(f"tracebus watch {token}".encode()).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal: Response | None = None
        if self.loopback and not is_loopback(_host_name(headers.get("host", ""))):
            refusal = PlainTextResponse("this watch answers to a loopback host only", 403)
        elif self.token is not None:
            refusal = self._check_token(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_token(self, scope: Scope, headers: Headers) -> Response | None:
        assert self.token is not None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = [value for name, value in query if name == "token"]
        if given and token_matches(given[-1], self.token):
            rest = urlencode([(name, value) for name, value in query if name != "token"])
            moved = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), 303)
            moved.set_cookie(COOKIE, self._pass, httponly=True, samesite="strict")
            return moved
        bearer = headers.get("authorization", "")
        cookie = _cookie(headers.get("cookie", ""))
        if (bearer.startswith("Bearer ") and token_matches(bearer[7:], self.token)) or (
            cookie is not None and token_matches(cookie, self._pass)
        ):
            return None
        return PlainTextResponse(
            "the token is missing or wrong: open the address with ?token=... once", 401
        )


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _host_name(host: str) -> str:
    """The name in a Host header: ``[::1]:8765`` is ``::1``, ``localhost:8765`` is
    ``localhost``."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if ":" in host else host
