"""The explorer's guards against other pages in the user's browser: the ``Host`` check (DNS
rebinding), same-origin POSTs, response headers (CSP, no sniffing, no framing, no referrer)
and multipart uploads kept in memory."""

from __future__ import annotations

import io
from typing import Sequence
from urllib.parse import urlsplit

from flask import Flask, Request, Response, request
from werkzeug.exceptions import BadRequest, Forbidden

__all__ = ["LOCAL_HOSTS", "MemoryRequest", "host_name", "protect"]

#: Host names accepted when the explorer is bound to a loopback address
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def host_name(host: str) -> str | None:
    """``"[::1]:8000" -> "::1"``, ``"LocalHost:80" -> "localhost"``; ``None`` when unparsable."""
    try:
        return urlsplit(f"//{host}").hostname
    except ValueError:
        return None


class MemoryRequest(Request):
    """Multipart file parts stay in memory (bounded by MAX_CONTENT_LENGTH), never in a temp file."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):  # type: ignore[override]
        return io.BytesIO()


def protect(app: Flask, trusted_hosts: Sequence[str] | None) -> None:
    """Install the guards on ``app``.

    Args:
        trusted_hosts: accepted ``Host`` names (``None``: any, for a non-loopback bind);
            IPv6 addresses without brackets (``"::1"``). Werkzeug's ``TRUSTED_HOSTS`` cuts
            every entry at its first ``':'``, so ``"::1"`` would never match: checked here.
    """
    hosts = None if trusted_hosts is None else {h.strip("[]").lower() for h in trusted_hosts}
    app.config["XBYOL_TRUSTED_HOSTS"] = hosts
    app.request_class = MemoryRequest

    @app.before_request
    def _local_host() -> None:
        if hosts is not None and (host_name(request.host) if request.host else None) not in hosts:
            raise BadRequest(f"Host {request.headers.get('Host')!r} refused: the explorer answers only to "
                             f"{', '.join(sorted(hosts))} (DNS-rebinding guard)")

    @app.before_request
    def _same_origin_posts() -> None:
        origin = request.headers.get("Origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None and urlsplit(origin).netloc != request.host:
            raise Forbidden(f"cross-origin request from {origin} refused")

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp
