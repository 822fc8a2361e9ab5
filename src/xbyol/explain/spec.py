"""Explanation targets from text specs, for a trained run.

An SSL encoder has no logits, so every explanation names what it explains:

- ``concept:<text>`` -- cosine between the image embedding mapped into concept space and
  the text's embedding (any text; the run's concept map, learned or post-hoc);
- ``image:<path>`` or ``image:<index>`` -- cosine to a reference image's embedding
  (an index refers to the run's test split): "why are these two alike?";
- ``class:<k or name>`` -- logit of the linear probe written by ``xbyol eval``;
- ``dim:<j>`` -- one embedding dimension; ``norm`` -- the embedding's L2 norm.
"""

from __future__ import annotations

import torch
from torch import nn

from xbyol.concepts.projection import concept_projection
from xbyol.data.io import load_image
from xbyol.explain.targets import (
    ConceptTarget,
    DimensionTarget,
    EmbeddingSimilarityTarget,
    LinearClassTarget,
    NormTarget,
    Target,
)
from xbyol.rundir import Run

TARGET_KINDS = ("concept", "image", "class", "dim", "norm")


def load_probe(run: Run) -> tuple[nn.Linear, list[str]]:
    """The linear probe of ``xbyol eval`` (``RunDir.probe``) as an ``nn.Linear`` over backbone features."""
    path = run.paths.probe
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `xbyol eval {run.paths.root}` first to fit the linear probe")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    w, b = blob["weight"], blob["bias"]
    lin = nn.Linear(w.shape[1], w.shape[0]).to(run.device)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return lin.eval(), list(blob["class_names"])


def parse_target(spec: str, run: Run) -> Target:
    """Build the target named by ``spec`` for the run's backbone (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"target must be one of {', '.join(k + ':...' for k in TARGET_KINDS[:4])} or norm; got {spec!r}")
    kind, _, arg = spec.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "norm":
        return NormTarget()
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r} in {spec!r}; expected concept:TEXT, image:PATH|INDEX, class:K, dim:J or norm")
    if not arg:
        raise ValueError(f"target {spec!r} needs a value after '{kind}:'")
    if kind == "concept":
        project_fn, bank = concept_projection(run)
        emb = bank.embed([arg])[0].to(run.device)
        return ConceptTarget(emb, project_fn)
    if kind == "image":
        if arg.isdigit():
            test = run.dataset("test")
            i = int(arg)
            if i >= len(test):
                raise ValueError(f"target {spec!r}: the test split has {len(test)} images")
            image = test[i]["image"]
        else:
            image = load_image(arg, run.cfg.data.image_size)
        ref = run.encode_images(image[None])[0]
        return EmbeddingSimilarityTarget(ref)
    if kind == "class":
        lin, names = load_probe(run)
        if arg.lstrip("-").isdigit():
            k = int(arg)
        else:
            lowered = [n.lower() for n in names]
            if arg.lower() not in lowered:
                raise ValueError(f"target {spec!r}: unknown class; the probe's classes are {', '.join(names)}")
            k = lowered.index(arg.lower())
        if lin.out_features == 1:
            # a binary probe has one logit (class 1); explain class 0 as its negation
            if k not in (0, 1):
                raise ValueError(f"target {spec!r}: the probe has 2 classes")
            sign = 1.0 if k == 1 else -1.0
            with torch.no_grad():
                lin.weight.mul_(sign)
                lin.bias.mul_(sign)
            k = 0
        if not 0 <= k < max(lin.out_features, 1):
            raise ValueError(f"target {spec!r}: class index must be in 0..{len(names) - 1}")
        return LinearClassTarget(lin, k)
    # dim
    if not arg.isdigit():
        raise ValueError(f"target {spec!r}: dim needs a non-negative integer")
    return DimensionTarget(int(arg))
