"""The explorer's state and model work: a loaded run, its test images, uploads, concept
targets and heatmaps (served by :mod:`xbyol.web.routes`)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Sequence

import torch
from werkzeug.exceptions import BadRequest, NotFound

from xbyol.concepts import explain_embedding
from xbyol.concepts.projection import concept_projection
from xbyol.explain.base import EXPLAINERS, Explainer
from xbyol.explain.concept_heatmaps import concept_heatmaps, concept_mask, default_methods
from xbyol.explain.render import heat_layer_uri, image_data_uri, outline_uri, overlay_uri
from xbyol.explain.targets import ConceptTarget
from xbyol.rundir import Run
from xbyol.web.uploads import DEFAULT_MAX_PIXELS, UploadDecoder

__all__ = ["Explorer", "concept_support", "ignores_target"]

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
#: typed concept texts whose targets are kept in memory
MAX_CONCEPT_TARGETS = 64


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

    def __init__(self, run: Run, methods: Sequence[str] | None = None, max_uploads: int = 32,
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
        if not 0 <= index < len(self.test):
            raise NotFound(f"no test image {index}: the test split has {len(self.test)} images (0..{len(self.test) - 1})")
        return self.test[index]["image"]

    def upload_image(self, uid: str) -> torch.Tensor:
        """uint8 ``[3, H, W]`` of an upload; 404 when the id is unknown or expired."""
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
