"""Guards every answer passes through: security headers, a request body size limit, and a token in front of
the operational documents (`/docs`, `/redoc`, `/openapi.json`, `/metrics`) when one is configured.

Plain ASGI middleware (not BaseHTTPMiddleware) so event streams are not buffered.
"""

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response

HSTS = b"max-age=31536000; includeSubDomains"
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_PAGE_CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Swagger UI and ReDoc load from jsdelivr and start with an inline script; the embedded sandbox (a dev tool)
# has inline scripts of its own.
_DOCS_CSP = (
    b"default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; worker-src 'self' blob:; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_LOOSE_PAGES = ("/docs", "/redoc", "/sandbox")
OPS_PATHS = ("/docs", "/redoc", "/openapi.json", "/metrics")


class SecurityHeaders:
    """nosniff, no framing, no referrer, a CSP (strict for the API, one for pages), HSTS behind TLS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in _headers_for(scope, headers):
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _headers_for(scope: Scope, response_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    content_type = next((v for k, v in response_headers if k.lower() == b"content-type"), b"")
    if not content_type.startswith(b"text/html"):
        csp = _API_CSP
    elif scope["path"].startswith(_LOOSE_PAGES):
        csp = _DOCS_CSP
    else:
        csp = _PAGE_CSP
    out = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", csp),
    ]
    forwarded_proto = dict(scope["headers"]).get(b"x-forwarded-proto", b"").split(b",")[0].strip()
    if scope.get("scheme") == "https" or forwarded_proto == b"https":
        out.append((b"strict-transport-security", HSTS))
    return out


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """A 413 for a request body over `max_bytes`: at once when Content-Length says so, else once read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received, too_large, answered = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                too_large = True
                raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if (
                too_large
            ):  # the app's answer to a body it could not read (FastAPI makes it a 400): ours instead
                if not answered:
                    answered = True
                    await self._refuse(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not answered:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"The request body is over {self.max_bytes} bytes.",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class OpsToken:
    """With a token configured, the operational documents need `Authorization: Bearer <token>` (else 401)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(OPS_PATHS):
            offered = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(offered, b"Bearer " + self.token):
                response = error_response(
                    401,
                    "unauthorized",
                    "This document needs the operations token.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
