"""Evaluator ``retrieval`` and text/image search for the cross-modal methods (xmodal, clip).

``xbyol eval RUN_DIR`` stores under ``eval.json["retrieval"]``:

- ``image_to_text``: queries are the test images, the gallery is the *distinct* caption
  strings of the test split; a retrieved caption is correct when it equals one of the
  query image's captions.
- ``text_to_image``: queries are all test captions (every caption of every image; equal
  strings are scored once and weighted by their count), the gallery is the test images;
  a retrieved image is correct when one of its captions equals the query. In ``shapes``
  several images can share a caption; each of them counts as correct.
- each direction reports R@1/5/10 and the median rank of the first correct item, with the
  chance level of a random ranking beside every figure (``chance_R@k``,
  ``chance_median_rank``; :mod:`xbyol.eval.retrieval` has the rule and the formulas).
- ``embeddings``: per-dimension std and RankMe effective rank of the test images' and
  distinct captions' retrieval embeddings (collapse check), with ``1/sqrt(d)``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from xbyol.augment import preprocess
from xbyol.data.io import load_image
from xbyol.eval.evaluators import EVALUATORS
from xbyol.eval.retrieval import caption_relevance, first_relevant_rank, retrieval_summary
from xbyol.methods.collapse import effective_rank, embedding_std
from xbyol.rundir import Run
from xbyol.text.captions import item_captions

KS = (1, 5, 10)
_CHUNK = 1024


@runtime_checkable
class Towers(Protocol):
    """A method with an image and a text tower (xmodal, clip) into one retrieval space."""

    def embed_images(self, images: torch.Tensor) -> torch.Tensor: ...

    def embed_texts(self, texts: list[str]) -> torch.Tensor: ...


def is_cross_modal(run: Run) -> bool:
    """Whether the run's method embeds both images and texts."""
    return isinstance(run.method, Towers)


def _towers(run: Run) -> Towers:
    if not isinstance(run.method, Towers):
        raise ValueError(
            f"run {run.paths.root} was trained with method {run.cfg.method.name!r}, which has no text tower; "
            "search needs a cross-modal run (method.name: xmodal or clip)"
        )
    return run.method


def embed_dataset_images(run: Run, split: str = "test") -> torch.Tensor:
    """Retrieval embeddings ``[N, E]`` of every image of a split, in dataset order."""
    return run.encode(split, fn=_towers(run).embed_images)  # (N, E)


@torch.no_grad()
def embed_texts(run: Run, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    """Retrieval embeddings ``[M, E]`` of ``texts``."""
    towers = _towers(run)
    out = [towers.embed_texts(texts[i : i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)]
    return torch.cat(out)  # (M, E)


def _ranks(queries: torch.Tensor, gallery: torch.Tensor, q_caps: list[list[str]], g_caps: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """First-relevant ranks and relevant counts of every query, in chunks of queries."""
    ranks, counts = [], []
    for s in range(0, len(queries), _CHUNK):
        rel = caption_relevance(q_caps[s : s + _CHUNK], g_caps)  # (q, G)
        sim = queries[s : s + _CHUNK] @ gallery.T  # (q, G)
        ranks.append(first_relevant_rank(sim, rel))
        counts.append(rel.sum(dim=1))
    return torch.cat(ranks), torch.cat(counts)


def retrieval_metrics(run: Run, split: str = "test", ks: tuple[int, ...] = KS) -> dict[str, dict[str, float]]:
    """Image->text and text->image retrieval of a cross-modal run (see the module docstring)."""
    _towers(run)
    caps = item_captions(run.dataset(split))  # per image
    text_counts = Counter(c for cs in caps for c in cs)
    texts = sorted(text_counts)
    img = embed_dataset_images(run, split)  # (N, E)
    txt = embed_texts(run, texts)  # (M, E)

    i2t_ranks, i2t_rel = _ranks(img, txt, caps, [[t] for t in texts])
    t2i_ranks, t2i_rel = _ranks(txt, img, [[t] for t in texts], caps)
    weights = torch.tensor([text_counts[t] for t in texts])
    t2i_ranks = t2i_ranks.repeat_interleave(weights)  # every caption is a query
    t2i_rel = t2i_rel.repeat_interleave(weights)
    d = img.shape[1]
    return {
        "image_to_text": retrieval_summary(i2t_ranks, i2t_rel, len(texts), ks),
        "text_to_image": retrieval_summary(t2i_ranks, t2i_rel, len(img), ks),
        "embeddings": {
            "image_std": embedding_std(img),
            "image_rank": effective_rank(img),
            "text_std": embedding_std(txt),
            "text_rank": effective_rank(txt),
            "healthy_std": 1.0 / d**0.5,
            "dim": float(d),
        },
    }


@EVALUATORS.register("retrieval")
def retrieval_evaluator(run: Run) -> dict[str, dict[str, float]] | None:
    """Image<->text Recall@1/5/10 and median rank on the test split, with chance levels."""
    if not is_cross_modal(run):
        return None
    return retrieval_metrics(run, "test")


def _item_path(ds: Any, i: int) -> str | None:
    paths = getattr(ds, "paths", None)
    if isinstance(paths, (list, tuple)) and len(paths) == len(ds):
        return str(paths[i])
    return None


def search_images(run: Run, text: str, k: int = 5, split: str = "test") -> list[dict[str, Any]]:
    """The ``k`` images of a split closest to ``text``.

    Returns:
        Best first: ``{"rank", "index", "score", "caption", "path"}`` (``path`` is None for
        generated datasets; ``index`` is the dataset index).
    """
    _towers(run)
    if not text.strip():
        raise ValueError("search: --text is empty")
    ds = run.dataset(split)
    caps = item_captions(ds)
    scores = embed_dataset_images(run, split) @ embed_texts(run, [text])[0]  # (N,)
    top = scores.topk(min(k, len(scores)))
    return [
        {"rank": r + 1, "index": int(i), "score": float(s), "caption": caps[int(i)][0], "path": _item_path(ds, int(i))}
        for r, (s, i) in enumerate(zip(top.values, top.indices))
    ]


def load_query_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file as uint8 ``[1, 3, size, size]`` (decoded as training decodes it)."""
    return load_image(path, size)[None]  # (1, 3, S, S)


@torch.no_grad()
def search_captions(run: Run, image: str | Path | torch.Tensor, k: int = 5, split: str = "test") -> list[dict[str, Any]]:
    """The ``k`` distinct captions of a split closest to an image (a path or uint8 ``[3, H, W]``).

    Returns:
        Best first: ``{"rank", "caption", "score"}``.
    """
    towers = _towers(run)
    if isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
    else:
        x = load_query_image(image, run.cfg.data.image_size)
    texts = sorted({c for cs in item_captions(run.dataset(split)) for c in cs})
    q = towers.embed_images(preprocess(x.to(run.device))).float().cpu()[0]  # (E,)
    scores = embed_texts(run, texts) @ q  # (M,)
    top = scores.topk(min(k, len(scores)))
    return [{"rank": r + 1, "caption": texts[int(i)], "score": float(s)} for r, (s, i) in enumerate(zip(top.values, top.indices))]
