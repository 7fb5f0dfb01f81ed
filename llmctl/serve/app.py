"""The FastAPI app: its error handlers and the one ASGI layer in front of
every route (body size, API key, draining, access log, request metrics). Routes: routes.py."""

from __future__ import annotations

import hmac
import json
import logging
import time

from llmctl.serve.service import ApiError, Service

_log = logging.getLogger(__name__)

OPEN_PATHS = {"/health"}  # answered without the API key (load balancers probe it)
WHILE_DRAINING = {"/health", "/metrics"}  # still answered after SIGTERM (health says "draining", 503)


class Front:
    """ASGI middleware: refuse early (413, 401, 503), then time, count and log every request."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        service, start, path = self.service, time.perf_counter(), scope["path"]
        status = {"code": 500}

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        service.in_flight += 1
        try:
            refusal = self._refusal(scope)
            if refusal is None and _unsized(scope):
                # No Content-Length (Transfer-Encoding: chunked): read the body here, up to the limit,
                # and hand the app what was read; one byte over is the same 413 as a declared size.
                receive, refusal = await self._read_capped(receive)
            if refusal is not None:
                await send_error(timed_send, refusal)
            else:
                await self.app(scope, receive, timed_send)
        finally:
            service.in_flight -= 1
            seconds = time.perf_counter() - start
            route = path if path in KNOWN_PATHS else "other"
            service.metrics.request(route, status["code"], seconds)
            if service.on_access is not None:
                client = scope.get("client") or ("-", 0)
                service.on_access({"client": f"{client[0]}:{client[1]}", "method": scope["method"], "path": path,
                                   "status": status["code"], "duration_ms": round(seconds * 1000, 1)})

    async def _read_capped(self, receive):
        """(a receive that replays the body, None), or (None, the 413) once the body passes max_body."""
        limit, parts, size = self.service.max_body, [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                parts.append(message)
                break
            size += len(message.get("body", b""))
            if size > limit:
                return None, ApiError(413, f"The request body has more than {limit} bytes; this server takes at "
                                      f"most {limit}.", code="request_too_large")
            parts.append(message)
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in parts if m["type"] == "http.request")
        replay = [{"type": "http.request", "body": body, "more_body": False}]
        replay += [m for m in parts if m["type"] != "http.request"]

        async def replayed():
            return replay.pop(0) if replay else await receive()

        return replayed, None

    def _refusal(self, scope) -> ApiError | None:
        service, path = self.service, scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if service.draining and path not in WHILE_DRAINING:
            return ApiError(503, "The server is shutting down; retry against another instance.", code="shutting_down")
        if service.api_key is not None and path not in OPEN_PATHS:
            given = headers.get("authorization", "")
            token = given[7:] if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), service.api_key.encode()):
                what = "Incorrect API key provided." if token else "Missing API key: send 'Authorization: Bearer KEY'."
                return ApiError(401, what, code="invalid_api_key")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > service.max_body:
            return ApiError(413, f"The request body has {int(length)} bytes; this server takes at most "
                            f"{service.max_body}.", code="request_too_large")
        return None


def _unsized(scope) -> bool:
    """A request that may carry a body but does not say its size."""
    names = {k.lower() for k, _ in scope.get("headers", [])}
    return scope["method"] not in ("GET", "HEAD", "OPTIONS") and b"content-length" not in names


KNOWN_PATHS = {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/predict",
               "/v1/embeddings"}


async def send_error(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(service: Service):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from llmctl.serve.routes import add_routes

    app = FastAPI(title="llmctl serve", docs_url=None, redoc_url=None, openapi_url=None)

    def respond(error: ApiError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid" or tuple(first.get("loc", ())) == ("body",):
            return respond(ApiError(400, "The body is not a JSON object: "
                                    f"{first.get('ctx', {}).get('error') or first.get('msg', 'parse error')}.",
                                    code="invalid_json"))
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return respond(ApiError(422, f"{where or 'body'}: {first.get('msg', 'invalid value')}"
                                + (f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""), param=where,
                                code="invalid_value"))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        message = {404: f"No route {request.url.path}.", 405: f"{request.method} is not allowed on {request.url.path}."}
        return respond(ApiError(exc.status_code, message.get(exc.status_code, str(exc.detail))))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        _log.exception("unexpected error answering %s", request.url.path)
        return respond(ApiError(500, f"Internal error: {type(exc).__name__}.", code="internal_error"))

    add_routes(app, service)
    return Front(app, service)
