"""``xbyol serve``: a small local web explorer of a run (Flask): :func:`create_app` puts together
the guards (:mod:`~xbyol.web.security`), the routes and error handlers (:mod:`~xbyol.web.routes`)
and the run's state (:class:`~xbyol.web.explorer.Explorer`).

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

from pathlib import Path
from typing import Sequence

from flask import Flask

from xbyol.explain.render import colorbar_uri
from xbyol.run import load_run
from xbyol.rundir import Run
from xbyol.web.explorer import Explorer
from xbyol.web.routes import explorer_routes
from xbyol.web.security import LOCAL_HOSTS, protect
from xbyol.web.uploads import DEFAULT_MAX_PIXELS

__all__ = ["LOCAL_HOSTS", "Explorer", "create_app"]


def create_app(
    run: Run | str | Path,
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
    if isinstance(run, (str, Path)):
        run = load_run(run, device=device)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=max_upload_bytes, XBYOL_PAGE_SIZE=page_size, XBYOL_COLORBAR=colorbar_uri())
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["xbyol_explorer"] = Explorer(run, methods=methods, max_uploads=max_uploads, max_pixels=max_pixels)
    protect(app, trusted_hosts)
    app.register_blueprint(explorer_routes)
    return app
