"""The studio's HTTP layer: FastAPI routes over ``Studio``, one static page, and the serving guards.

Why FastAPI + one small page rather than Gradio: the page is three static files served from
the package (no CDN, no web fonts, works offline, loads instantly in headless Chromium), and
every safety rule below is a few explicit lines instead of framework defaults.

Guards, in the order a request meets them:

- ``Host`` must be a loopback name when bound to loopback (stops DNS-rebinding pages);
- ``POST`` needs the header ``X-Requested-With: cadenza`` (a cross-site form cannot send it
  without a CORS preflight, which the studio never grants);
- ``Content-Length`` is required on ``POST`` and capped (413 before the body is read), and the
  body must then arrive within ``Limits.body_timeout_s`` with no gap over ``idle_timeout_s``
  (408 otherwise: a stalled client cannot hold a request forever); a connection that does not
  finish its request headers within ``HEADER_TIMEOUT_S`` is closed;
- the form is parsed with caps on files, fields and part sizes, then validated (400 naming
  the field); uploads are capped in bytes and in recording length (413);
- the queue takes at most N running + Q waiting generations, then answers 503 "busy" with
  ``Retry-After``;
- files are served only by generation id (12 hex digits) and a fixed kind, never by path.

API (JSON; errors are ``{"error": ..., "hint": ...}`` with a 4xx/5xx status):

- ``GET  /api/options``                 form choices, defaults, limits, model id
- ``GET  /api/health``                  ``{"ok": true, "queue": {...}}``
- ``POST /api/generate``                multipart form (fields as in ``validation.parse_form``;
  files ``melody_file``, ``rhythm_file``) → 202 ``{"id", "status", ...}``, or 400/413/503
- ``GET  /api/jobs/<id>``               ``queued | running | done | failed``; ``generation`` when done
- ``GET  /api/history?limit&offset``    newest first
- ``GET  /api/history/<id>``            one generation
- ``GET  /api/history/<id>/<kind>``     kind: audio, plot, controls_zip, controls_npz, request
  (``?download=1`` for an attachment)
- ``POST /api/history/<id>/rerun``      same inputs and seed → 202 job
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cadenza.app.config import StudioConfig, is_loopback
from cadenza.app.queue import Busy
from cadenza.app.studio import Studio
from cadenza.app.validation import RequestError
from cadenza.errors import CadenzaError
from cadenza.limits import MAX_PAGE_OFFSET, check_int

log = logging.getLogger("cadenza.app")

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
CSRF_HEADER = "x-requested-with"
CSRF_VALUE = "cadenza"
DEFAULT_HINT = "GET /api/options lists what the studio accepts"  # every refusal says where to look
FORM_HINT = "send the form as the studio page does: text fields under 256 KB each, at most 64 fields and 3 files"
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1", "[::1]"]


def _error(status: int, message: str, hint: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


class BodyTimeout(RequestError):
    """The client stopped sending its body (or sends it too slowly): answered 408, the connection closed."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the request body did not arrive in time ({what})", "send the whole form at once; check the connection", status=408)


class BodyLimit:
    """Pure ASGI guard: ``POST`` must declare a ``Content-Length`` within ``max_bytes`` (checked before reading),
    and its body must then arrive within ``total_s`` seconds with no pause over ``idle_s`` between chunks.

    Without the timeouts, a client whose Content-Length promises more than it sends holds its
    request (and the form parser waiting on it) forever.
    """

    def __init__(self, app: Any, max_bytes: int, total_s: float = 60.0, idle_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.total_s = total_s
        self.idle_s = idle_s

    def _timed(self, scope: dict, receive: Any, send: Any) -> tuple[Any, Any]:
        """``(receive, send)`` for the app with the body deadlines enforced here, outside every other layer.

        Past a deadline the client gets a JSON 408 at once (unless a response has started), the app is
        told the client disconnected (so the form parser stops), and whatever the app sends after
        that is dropped. Raising instead would surface inside starlette's middleware task groups as
        an unhandled ExceptionGroup.
        """
        deadline = time.monotonic() + self.total_s
        state = {"started": False, "timed_out": False}

        async def timed_receive() -> dict:
            if state["timed_out"]:
                return {"type": "http.disconnect"}
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                return await asyncio.wait_for(receive(), timeout=min(self.idle_s, left))
            except asyncio.TimeoutError:
                what = f"more than {self.total_s:g} s in all" if left <= self.idle_s else f"nothing received for {self.idle_s:g} s"
                if not state["started"]:
                    state["started"] = True
                    err = BodyTimeout(what)
                    await _error(err.status, err.message, err.hint, {"Connection": "close"})(scope, receive, send)
                state["timed_out"] = True
                return {"type": "http.disconnect"}

        async def guarded_send(message: dict) -> None:
            if state["timed_out"]:
                return
            if message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        return timed_receive, guarded_send

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            response = None
            if length is None:
                response = _error(411, "the request has no Content-Length", "send the form with a Content-Length header (browsers do)")
            else:
                try:
                    n = int(length)
                except ValueError:
                    n = -1
                if n < 0:
                    response = _error(400, "invalid Content-Length header")
                elif n > self.max_bytes:
                    response = _error(
                        413, f"the request is too large ({n / 2**20:.1f} MB; at most {self.max_bytes / 2**20:.0f} MB)",
                        "upload smaller files (each at most the studio's upload limit)",
                    )
            if response is not None:
                await response(scope, receive, send)
                return
            receive, send = self._timed(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(studio: Studio, config: StudioConfig | None = None):
    """The FastAPI app serving ``studio`` (routes under /api, the page at /)."""
    config = config or studio.config
    app = FastAPI(title="Cadenza studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    limits = studio.limits

    # ------------------------------------------------------------------ errors
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError):
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, Busy) else None
        return _error(err.status, err.message, err.hint or DEFAULT_HINT, headers)

    @app.exception_handler(CadenzaError)
    async def _cadenza_error(request: Request, err: CadenzaError):
        return _error(400, err.message, err.hint or DEFAULT_HINT)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        message = err.detail if isinstance(err.detail, str) else "bad request"
        hint = FORM_HINT if err.status_code == 400 else None  # starlette's form parser: a part too large, too many files
        if err.status_code == 404:
            message, hint = f"no such page: {request.url.path[:80]}", "see the studio page for what it serves"
        elif err.status_code == 405:
            hint = "see the API list in cadenza/app/server.py for each route's method"
        return _error(err.status_code, message, hint)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error(400, f"{where or 'request'}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, err: ClientDisconnect):
        return Response(status_code=400)  # nobody to answer (or BodyLimit answered 408 already): not a fault to log

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception):
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(err).__name__})", "the studio keeps running; see its log")

    # ------------------------------------------------------------------ guards
    @app.middleware("http")
    async def _guards(request: Request, call_next):
        if request.method == "POST" and request.headers.get(CSRF_HEADER, "").lower() != CSRF_VALUE:
            return _error(403, f"missing header {CSRF_HEADER.title()}: {CSRF_VALUE}", "the studio page sends it; scripts must send it too")
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    # ------------------------------------------------------------------ page
    def _static(name: str) -> Response:
        body = (resources.files("cadenza.app") / "static" / name).read_bytes()
        return Response(body, media_type=STATIC[name])

    @app.get("/", include_in_schema=False)
    async def index():
        return _static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in STATIC:
            return _error(404, f"no such file: {name[:60]}")
        return _static(name)

    # ------------------------------------------------------------------ API
    @app.get("/api/health")
    async def health():
        return {"ok": True, "model_id": studio.model_id, "queue": studio.queue.stats()}

    @app.get("/api/options")
    async def options():
        return studio.options()

    @app.post("/api/generate", status_code=202)
    async def generate(request: Request):
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            return _error(415, f"expected a form, got '{ctype[:60] or 'no content type'}'", "send multipart/form-data (what the page's FormData sends)")
        form = await request.form(max_files=3, max_fields=64, max_part_size=256 * 1024)
        try:
            fields: dict[str, str] = {}
            files: dict[str, tuple[str | None, Any]] = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if not value.filename and not value.size:  # a file input left empty
                        continue
                    files[key] = (value.filename, value.file)
                else:
                    fields[key] = value
            job = await run_in_threadpool(studio.submit, fields, files)
        finally:
            await form.close()
        return JSONResponse(studio.job_view(job.id), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

    @app.get("/api/jobs/{job_id}")
    async def job(job_id: str):
        return studio.job_view(job_id)

    @app.get("/api/history")
    async def history(limit: str = "50", offset: str = "0"):
        try:  # the shared checks: an offset of 10**20 is a 400, not SQLite's OverflowError
            limit_n = check_int("limit", limit, 1, 500, hint="limit 1-500, offset ≥ 0")
            offset_n = check_int("offset", offset, 0, MAX_PAGE_OFFSET, hint=f"limit 1-500, offset 0 to {MAX_PAGE_OFFSET}")
        except CadenzaError as err:
            raise RequestError(f"invalid page: {err.message}", err.hint) from None
        limit, offset = limit_n, offset_n
        rows = await run_in_threadpool(studio.history.list, limit, offset)
        return {"total": await run_in_threadpool(studio.history.count), "items": [studio.generation_view(g) for g in rows]}

    @app.get("/api/history/{gid}")
    async def history_item(gid: str):
        try:
            g = await run_in_threadpool(studio.history.get, gid)
        except RequestError:
            raise
        except CadenzaError as err:
            raise RequestError(err.message, err.hint, status=404 if "no generation" in err.message else 400) from None
        return studio.generation_view(g)

    @app.get("/api/history/{gid}/{kind}")
    async def history_file(gid: str, kind: str, download: bool = False):
        path, media, name = await run_in_threadpool(studio.file_for, gid, kind)
        return FileResponse(
            path, media_type=media, filename=name, content_disposition_type="attachment" if download else "inline",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.post("/api/history/{gid}/rerun", status_code=202)
    async def rerun(gid: str):
        try:
            job = await run_in_threadpool(studio.rerun, gid)
        except RequestError:
            raise
        except CadenzaError as err:
            raise RequestError(err.message, err.hint, status=404 if "no generation" in err.message else 400) from None
        return JSONResponse(studio.job_view(job.id), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

    if is_loopback(config.host):
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)
    return BodyLimit(app, limits.max_body_bytes, limits.body_timeout_s, limits.idle_timeout_s)


# ---------------------------------------------------------------------- running
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), so the caller knows the port before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CadenzaError(f"cannot listen on {host}:{port} ({exc.strerror})", "pick another --port, or stop what is using it") from None
    sock.listen(128)
    return sock


HEADER_TIMEOUT_S = 10.0  # a connection must finish sending a request's headers this soon after it starts one


def _header_timeout_protocol() -> type:
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive in time.

    uvicorn bounds idle keep-alive connections but not a client that sends half a request line and
    stops (a slowloris): each such socket stayed open forever and counted against the connection cap.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _idle(self) -> bool:  # no request in progress: waiting for (the rest of) the next request's headers
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None and self._idle():
                self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._expire)

        def _expire(self) -> None:
            self._header_timer = None
            if self._idle() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._idle() and self._header_timer is not None:  # a request started: its body has BodyLimit's deadlines
                self._header_timer.cancel()
                self._header_timer = None
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return HeaderTimeoutH11


def uvicorn_server(asgi: Any, log_level: str = "info"):
    import uvicorn

    # idle keep-alive connections are closed after 5 s; past 128 open connections new ones get 503 at once
    cfg = uvicorn.Config(
        asgi, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=5,
        timeout_keep_alive=5, limit_concurrency=128, http=_header_timeout_protocol(),
    )
    return uvicorn.Server(cfg)


class BackgroundServer:
    """The studio served from a thread on a given socket (tests, screenshots, notebooks)."""

    def __init__(self, studio: Studio, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.studio = studio
        self.sock = bind_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn_server(create_app(studio), log_level)
        self.server.config.install_signal_handlers = False  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self._run, name="cadenza-studio", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve(config: StudioConfig, log_level: str = "info", on_ready: Any = None) -> None:
    """Load the model(s), warm up, and serve until interrupted (what ``cadenza serve`` runs)."""
    sock = bind_socket(config.host, config.port)  # first, so a taken port fails before the model loads
    try:
        studio = Studio(config)
        try:
            if config.warmup:
                studio.warm_up()
            server = uvicorn_server(create_app(studio, config), log_level)
            host, port = sock.getsockname()[:2]
            if on_ready is not None:
                on_ready(f"http://{host if ':' not in host else f'[{host}]'}:{port}", studio)
            server.run(sockets=[sock])
        finally:
            studio.close()
    finally:
        sock.close()
