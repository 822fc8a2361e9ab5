"""Report sections computed from the trained model: embedding map, concept confusion,
heatmap gallery. They need ``checkpoints/last.pt``; progress bars cover the long steps."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from xbyol.report.blocks import Figure, Gallery, GalleryImage, GalleryRow, Note, Section, Table

__all__ = ["concept_confusion", "confusion_blocks", "embedding_map_section", "gallery_concepts", "gallery_section",
           "spread_indices"]


def _tqdm(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return [int(i * n / k) for i in range(k)]


@torch.no_grad()
def _encode(run: Any, dataset: Any, indices: list[int], progress: bool, desc: str, batch_size: int = 256) -> torch.Tensor:
    out = []
    with _tqdm(len(indices), desc, progress) as bar:
        for s in range(0, len(indices), batch_size):
            idx = indices[s : s + batch_size]
            images = torch.stack([dataset[i]["image"] for i in idx])  # (b, 3, H, W)
            out.append(run.encode(images).float().cpu())  # (b, D)
            bar.update(len(idx))
    return torch.cat(out)  # (N, D)


# ----------------------------------------------------------------------------- embedding map


def _colourings(dataset: Any, indices: list[int], max_groups: int = 2) -> dict[str, list[str]]:
    from xbyol.explain.embedding_maps import color_values

    samples = [dataset[i] for i in indices]
    out: dict[str, list[str]] = {}
    class_names = list(getattr(dataset, "class_names", []) or [])
    labels = [int(s["label"]) for s in samples]
    if len(set(labels)) > 1:
        out["label"] = color_values(labels, class_names)
    groups = dict(getattr(dataset, "concept_groups", {}) or {})
    names = list(getattr(dataset, "concept_names", []) or [])
    if groups and samples and "concepts" in samples[0]:
        concepts = torch.stack([s["concepts"] for s in samples])  # (N, V)
        for g, idx in groups.items():
            if len(out) > max_groups:
                break
            if {names[i] for i in idx} == set(class_names):
                continue  # the same as the label colouring
            out[g] = color_values(None, [], concepts, names, idx)
    if not out:
        out["dataset"] = ["test"] * len(indices)
    return out


def embedding_map_section(run: Any, method: str = "tsne", max_points: int = 1000, progress: bool = True) -> Section:
    """2-D map of the test split's representations, coloured by label and concept groups."""
    from xbyol.explain.embedding_maps import embed_2d
    from xbyol.report.figures import embedding_map_figure

    sec = Section("embedding-map", "Embedding map")
    test = run.dataset("test")
    if len(test) < 3:
        sec.missing = f"the test split has {len(test)} images; a map needs at least 3."
        return sec
    indices = spread_indices(len(test), max_points)
    feats = _encode(run, test, indices, progress, "embedding map: encode")
    coords = embed_2d(feats, method=method, seed=run.cfg.train.seed)  # (N, 2)
    title = f"{method.upper() if method != 'tsne' else 't-SNE'} of {len(indices)} test representations (step {run.step})"
    sec.blocks.append(Figure(embedding_map_figure(coords, _colourings(test, indices), title), caption=title,
                             alt="embedding map"))
    return sec


# ----------------------------------------------------------------------------- concept confusion


@torch.no_grad()
def concept_confusion(run: Any, max_images: int = 2000, progress: bool = True) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Per concept group: confusion counts ``[G, G]`` (true rows, predicted columns).

    The prediction is the group's concept with the highest cosine to the image in the
    concept space; only test images with exactly one true concept in the group count.

    Returns:
        ``{group: (concept texts, counts [G, G] long)}`` for groups with at least two concepts.
    """
    import torch.nn.functional as F

    from xbyol.augment import preprocess
    from xbyol.concepts.projection import concept_projection
    from xbyol.concepts.vocabulary import ConceptLabeler
    from xbyol.data.base import collate

    project_fn, bank = concept_projection(run)
    test = run.dataset("test")
    labeler = ConceptLabeler(bank.texts, test)
    indices = spread_indices(len(test), max_images)
    emb = bank.embeddings.to(run.device)  # (K, E)
    cos_all, tgt_all = [], []
    with _tqdm(len(indices), "concept confusion", progress) as bar:
        for s in range(0, len(indices), 256):
            batch = collate([test[i] for i in indices[s : s + 256]])
            z = project_fn(run.backbone(preprocess(batch["image"].to(run.device))))  # (b, E)
            cos_all.append((F.normalize(z.float(), dim=-1) @ emb.T.float()).cpu())  # (b, K)
            tgt_all.append(labeler(batch).cpu())  # (b, K)
            bar.update(len(batch["image"]))
    cos, tgt = torch.cat(cos_all), torch.cat(tgt_all).bool()
    groups = bank.groups or {"all": list(range(len(bank)))}
    out = {}
    for g, idx in groups.items():
        if len(idx) < 2:
            continue
        cols = torch.tensor(idx, dtype=torch.long)
        t = tgt[:, cols]  # (N, G)
        single = t.sum(dim=1) == 1
        if not bool(single.any()):
            continue
        true = t[single].float().argmax(dim=1)  # (n,)
        pred = cos[single][:, cols].argmax(dim=1)  # (n,)
        counts = torch.zeros(len(idx), len(idx), dtype=torch.long)
        counts.index_put_((true, pred), torch.ones_like(true), accumulate=True)
        out[g] = ([bank.texts[i] for i in idx], counts)
    return out


def confusion_blocks(run: Any, progress: bool = True) -> list[Any]:
    """Figures of :func:`concept_confusion`, one per group."""
    from xbyol.report.figures import confusion_figure

    conf = concept_confusion(run, progress=progress)
    if not conf:
        return [Note("concept confusion: no concept group has test images with exactly one of its concepts.")]
    blocks: list[Any] = []
    rows = []
    for g, (texts, counts) in conf.items():
        blocks.append(Figure(confusion_figure(counts.numpy(), texts, f"concept confusion: {g}"),
                             caption=f"{g}: {int(counts.sum())} test images with exactly one {g} concept",
                             alt=f"concept confusion {g}"))
        rows.append([g, int(counts.sum()), float(counts.diag().sum()) / max(1, int(counts.sum()))])
    blocks.insert(0, Table(["group", "images", "accuracy"], rows,
                           caption="Concept confusion (test images with exactly one concept of the group)"))
    return blocks


# ----------------------------------------------------------------------------- heatmap gallery


def gallery_concepts(sample: dict[str, Any], dataset: Any, groups: Sequence[str], max_concepts: int) -> list[str]:
    """The concept texts explained for one image.

    The image's concepts in ``groups`` (all groups when the dataset has none of them), in
    group order; else its class name; else the first words of its caption.
    """
    names = list(getattr(dataset, "concept_names", []) or [])
    all_groups = dict(getattr(dataset, "concept_groups", {}) or {})
    chosen = [g for g in groups if g in all_groups] or list(all_groups)
    out: list[str] = []
    if "concepts" in sample and names:
        has = sample["concepts"].bool()
        order = [i for g in chosen for i in all_groups[g]] if chosen else list(range(len(names)))
        out = [names[i] for i in order if bool(has[i])]
    if not out:
        label = int(sample.get("label", -1))
        classes = list(getattr(dataset, "class_names", []) or [])
        if 0 <= label < len(classes):
            out = [classes[label]]
        elif sample.get("caption"):
            out = [" ".join(str(sample["caption"]).split()[:8])]
    return list(dict.fromkeys(out))[:max_concepts]


def _subtitle(sample: dict[str, Any], dataset: Any) -> str:
    parts = []
    classes = list(getattr(dataset, "class_names", []) or [])
    label = int(sample.get("label", -1))
    if 0 <= label < len(classes):
        parts.append(f"label: {classes[label]}")
    if sample.get("caption"):
        parts.append(str(sample["caption"]))
    return " | ".join(parts)


def gallery_section(
    run: Any,
    n_images: int = 6,
    methods: Sequence[str] | None = None,
    groups: Sequence[str] = ("shape", "colour"),
    max_concepts: int = 3,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    extra_blocks: Sequence[Any] = (),
) -> Section:
    """``n_images`` test images x explainer methods x each image's concepts.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        n_images: images, spread over the test split (ignored with ``indices``).
        methods: explainer names (default :func:`~xbyol.report.heatmaps.default_methods`).
        groups: concept groups whose concepts are explained (see :func:`gallery_concepts`).
        max_concepts: concepts per image.
        indices: explicit test-split indices.
        progress: a progress bar over concepts x methods.
        extra_blocks: blocks shown first (the explanation-metrics table).
    """
    from xbyol.report.figures import image_data_uri
    from xbyol.report.heatmaps import check_methods, concept_heatmaps, default_methods, overlay_uri

    methods = check_methods(methods if methods is not None else default_methods())
    sec = Section("gallery", "Heatmap gallery", blocks=list(extra_blocks),
                  intro="Each row explains the cosine between the image's embedding (in the concept space) and the "
                        "text of one of its concepts; red = most responsible for that similarity. Maps are min-max "
                        "normalised per image.")
    test = run.dataset("test")
    if indices is None:
        indices = spread_indices(len(test), n_images)
    bad = [i for i in indices if not 0 <= int(i) < len(test)]
    if bad:
        raise ValueError(f"gallery image indices {bad} out of range: the test split has {len(test)} images")
    samples = [test[int(i)] for i in indices]
    concepts = [gallery_concepts(s, test, groups, max_concepts) for s in samples]
    by_concept: dict[str, list[int]] = {}
    for pos, cs in enumerate(concepts):
        for c in cs:
            by_concept.setdefault(c, []).append(pos)
    results: dict[tuple[int, str], tuple[float, list[str]]] = {}
    with _tqdm(len(by_concept) * len(methods), "heatmap gallery", progress) as bar:
        for concept, positions in by_concept.items():
            images = torch.stack([samples[p]["image"] for p in positions])  # (b, 3, H, W)
            target = run.target(f"concept:{concept}")
            scores, maps = None, {}
            for m in methods:
                scores, one = concept_heatmaps(run, images, concept, [m], target=target)
                maps.update(one)
                bar.update(1)
            assert scores is not None
            for j, p in enumerate(positions):
                cells = [overlay_uri(images[j], maps[m][j]) for m in methods]
                results[(p, concept)] = (float(scores[j]), cells)
    items = []
    for pos, (i, s) in enumerate(zip(indices, samples)):
        rows = [GalleryRow(c, *results[(pos, c)]) for c in concepts[pos]]
        items.append(GalleryImage(title=f"test image {int(i)}", subtitle=_subtitle(s, test),
                                  src=image_data_uri(s["image"], min_size=96), rows=rows))
    sec.blocks.append(Gallery(methods=list(methods), images=items))
    return sec
