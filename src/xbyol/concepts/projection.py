"""From a run's representation into the concept space: the learned map of an ``xbyol`` run,
or a post-hoc map fitted on the frozen features of any other run.

``concept_projection(run)`` returns ``(project_fn, bank)`` where ``project_fn`` is a
differentiable ``nn.Module`` taking the backbone representation ``[B, D]`` (the pooled
output of ``backbone.forward``) to the concept space ``[B, E]``. Explainers use it for
concept targets (cosine with a text embedding) and SSCS applies it to every location of
the spatial feature map (:func:`apply_dense`).

Post-hoc fitting (the baseline for runs without a learned map, e.g. ``byol``): the same
architecture as ``xbyol``'s concept map -- the run's own frozen projector followed by a
linear map into the concept space -- trained with the *same* semantic loss
(``method.semantic.loss`` and ``temperature``) on the frozen, un-augmented features of
the whole training split with the same per-image concept labels, by full-batch Adam
(``method.semantic.posthoc_steps``, ``posthoc_lr``, seed ``train.seed``). Only the linear
map is fitted; the encoder and projector are untouched. Its inputs are standardised with
the training statistics during the fit (as the linear probe standardises its features),
and the standardisation is folded into the linear map afterwards; so every post-hoc row
of a comparison (raw pixels, random init, BYOL) is fitted the same way, whatever the
scale of its features. The fit is cached in
``concept_map.pt`` under the xbyol cache directory, never in the run directory (keyed by the
checkpoint's SHA-256, the concepts and the fitting settings).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from xbyol.concepts.bank import ConceptBank
from xbyol.concepts.build import bank_for
from xbyol.concepts.vocabulary import ConceptLabeler
from xbyol.losses.semantic import semantic_loss
from xbyol.rundir import CONCEPT_MAP, CONCEPT_MAP_BACKBONE, Run, RunDir, cache_root, extract_features


class ConceptMap(nn.Module):
    """Representation ``[B, D]`` -> concept space ``[B, E]``: an optional projector, then a linear map.

    Args:
        projector: module applied first (``None``: the linear map reads the representation directly).
        linear: ``nn.Linear`` into the concept space.
    """

    def __init__(self, projector: nn.Module | None, linear: nn.Linear) -> None:
        super().__init__()
        self.projector = projector
        self.linear = linear

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        p = self.projector(h) if self.projector is not None else h  # (B, P)
        return self.linear(p)  # (B, E)


def apply_dense(project_fn: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """Apply a concept map at every location of a spatial feature map.

    Args:
        project_fn: ``[N, D] -> [N, E]`` (in eval mode, so BatchNorm acts per vector).
        fmap: ``[B, D, h, w]`` backbone feature map.

    Returns:
        ``[B, E, h, w]`` concept-space vectors.
    """
    b, d, h, w = fmap.shape
    flat = fmap.permute(0, 2, 3, 1).reshape(b * h * w, d)  # (B*h*w, D)
    out = project_fn(flat)  # (B*h*w, E)
    return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # (B, E, h, w)


def fit_concept_map(
    feats: torch.Tensor,
    targets: torch.Tensor,
    concepts: torch.Tensor,
    projector: nn.Module | None = None,
    loss: str = "contrastive",
    temperature: float = 0.1,
    steps: int = 300,
    lr: float = 0.01,
    seed: int = 0,
) -> ConceptMap:
    """Fit the linear part of a concept map on frozen features with the semantic loss.

    Args:
        feats: frozen representations ``[N, D]``.
        targets: positives ``[N, K]`` bool (unlabelled rows are ignored).
        concepts: concept embeddings ``[K, E]``.
        projector: frozen module applied before the linear map (kept in eval mode).
        loss: ``"contrastive"`` or ``"cosine"``.
        temperature: of the contrastive loss.
        steps: full-batch Adam steps.
        lr: Adam learning rate.
        seed: initialisation seed of the linear map.

    Returns:
        A :class:`ConceptMap` in eval mode. The fit sees each input feature standardised
        with the labelled rows' mean and std; the map returned takes unstandardised input.
    """
    if feats.ndim != 2 or targets.shape != (feats.shape[0], concepts.shape[0]):
        raise ValueError(f"expected feats [N, D] and targets [N, K]; got {list(feats.shape)} and {list(targets.shape)}")
    keep = targets.any(dim=1)
    if not bool(keep.any()):
        raise ValueError("cannot fit a concept map: no training image has a known concept")
    if projector is not None:
        projector.eval()
    with torch.no_grad():
        inputs = projector(feats[keep]) if projector is not None else feats[keep]  # (N', P)
    t = targets[keep]
    mean = inputs.mean(0)  # (P,)
    std = inputs.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant features are left unscaled
    standardized = (inputs - mean) / std  # (N', P)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = nn.Linear(inputs.shape[1], concepts.shape[1]).to(feats.device)
    opt = torch.optim.Adam(linear.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            value = semantic_loss(loss, linear(standardized), concepts, t, temperature)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
    with torch.no_grad():  # fold it in: W (x - m) / s + b = (W / s) x + (b - (W / s) m)
        weight = linear.weight / std  # (E, P)
        linear.weight.copy_(weight)
        linear.bias.sub_(weight @ mean)
    return ConceptMap(projector, linear).eval()


def representations_and_targets(run: Run, split: str, bank: ConceptBank) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled backbone representations ``[N, D]`` of the un-augmented images of a split and their positives ``[N, K]``."""
    dataset = run.dataset(split)
    feats, targets = extract_features(run.backbone, dataset, device=run.device, targets=ConceptLabeler(bank.texts, dataset))
    return feats.to(run.device), targets.to(run.device)  # (N, D), (N, K)


def run_bank(run: Run) -> ConceptBank:
    """The concept bank of a run: the method's own, else one saved in the run directory, else built
    from the texts (their embeddings are cached outside the run directory)."""
    method_bank = getattr(run.method, "bank", None)
    if isinstance(method_bank, ConceptBank):
        return method_bank
    return bank_for(run.cfg.method.semantic, run.dataset("train"), run.paths.root)


def concept_projection(run: Run, use_projector: bool = True) -> tuple[ConceptMap, ConceptBank]:
    """``(project_fn, bank)``: a map from the run's representation ``[B, D]`` to the concept space ``[B, E]``.

    For ``xbyol`` runs this is the learned map (projector + concept head). For other runs
    a post-hoc map is fitted once (see the module docstring) and cached outside the run
    directory, in ``RunDir.cache_dir()`` (keyed by the checkpoint's SHA-256), as
    ``concept_map.pt`` (``concept_map_backbone.pt`` when ``use_projector=False``).

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        use_projector: post-hoc maps only: start from the run's projector (the same
            architecture as ``xbyol``) or fit the linear map on the representation itself.
    """
    method = run.method
    learned = getattr(method, "concept_map", None)  # an xbyol method's own map and bank
    if callable(learned) and hasattr(method, "concept_head"):
        return learned().eval(), run_bank(run)
    bank = run_bank(run)
    s = run.cfg.method.semantic
    projector = getattr(method, "projector", None) if use_projector else None
    weights = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in run.backbone.state_dict().values()))
    name = (CONCEPT_MAP if use_projector else CONCEPT_MAP_BACKBONE).replace(".pt", f"-{weights.hexdigest()[:12]}.pt")
    # keyed by the checkpoint and by the encoder's weights: a benchmark may give a run another backbone
    has_ckpt = run.paths.checkpoint(run.checkpoint).is_file()
    path = (run.paths.cache_dir(run.checkpoint) if has_ckpt else cache_root() / "runs" / "no-checkpoint") / name
    key = {"step": int(run.step), "texts": bank.texts, "prompt": bank.prompt, "loss": s.loss,
           "temperature": float(s.temperature), "steps": int(s.posthoc_steps), "lr": float(s.posthoc_lr),
           "seed": int(run.cfg.train.seed), "projector": projector is not None, "standardized": True}
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") == key:
            w = blob["linear"]
            linear = nn.Linear(w["weight"].shape[1], w["weight"].shape[0])
            linear.load_state_dict(w)
            return ConceptMap(projector, linear.to(run.device)).eval(), bank
    feats, targets = representations_and_targets(run, "train", bank)
    cmap = fit_concept_map(feats, targets, bank.embeddings.to(feats.device), projector,
                           s.loss, s.temperature, s.posthoc_steps, s.posthoc_lr, run.cfg.train.seed)
    blob = {"key": key, "linear": {k: v.detach().cpu() for k, v in cmap.linear.state_dict().items()}}
    RunDir.write(path, lambda f: torch.save(blob, f))
    return cmap, bank
