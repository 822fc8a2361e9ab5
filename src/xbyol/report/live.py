"""Report sections computed from the trained model: embedding map, concept confusion,
heatmap gallery, augmented views, nearest neighbours, the linear probe's confusion matrix.
They need ``checkpoints/last.pt``; progress bars cover the long steps."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Subset
from tqdm.auto import tqdm

from xbyol.augment import unnormalize
from xbyol.concepts.projection import concept_projection
from xbyol.concepts.vocabulary import ConceptLabeler
from xbyol.data.sampling import dataset_labels, stratified_indices
from xbyol.explain.base import EXPLAINERS
from xbyol.explain.concept_heatmaps import concept_heatmaps, concept_mask, default_methods
from xbyol.explain.embedding_maps import color_values, embed_2d, same_partition
from xbyol.explain.render import colorbar_uri, image_data_uri, overlay_uri
from xbyol.explain.spec import load_probe, parse_target
from xbyol.report.blocks import (
    Figure,
    Gallery,
    GalleryImage,
    GalleryRow,
    GridCell,
    GridRow,
    ImageGrid,
    KeyValues,
    Note,
    Section,
    Table,
)
from xbyol.report.figures import confusion_figure, embedding_map_figure
from xbyol.rundir import Run, extract_features

__all__ = ["concept_confusion", "confusion_blocks", "embedding_map_section", "gallery_concepts", "gallery_section",
           "nearest_neighbours", "neighbours_section", "probe_confusion", "probe_confusion_blocks",
           "random_pick_same_label_rate", "same_label_rate", "spread_indices", "views_section"]


def _tqdm(total: int, desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return [int(i * n / k) for i in range(k)]


# ----------------------------------------------------------------------------- embedding map


def _colourings(dataset: Any, indices: list[int], max_groups: int = 2) -> dict[str, list[str]]:
    """Label colouring, then up to ``max_groups`` concept groups that do not repeat one already chosen."""
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
            values = color_values(None, [], concepts, names, idx)
            if any(same_partition(values, shown) for shown in out.values()):
                continue  # e.g. a folder dataset's "class" group is its labels again
            out[g] = values
    if not out:
        out["dataset"] = ["test"] * len(indices)
    return out


def embedding_map_section(run: Run, method: str = "tsne", max_points: int = 1000, progress: bool = True) -> Section:
    """2-D map of the test split's representations, coloured by label and concept groups."""
    sec = Section("embedding-map", "Embedding map")
    test = run.dataset("test")
    if len(test) < 3:
        sec.missing = f"the test split has {len(test)} images; a map needs at least 3."
        return sec
    indices = stratified_indices(dataset_labels(test), max_points)
    feats = run.encode("test", indices, progress=progress)
    coords = embed_2d(feats, method=method, seed=run.cfg.train.seed)  # (N, 2)
    title = f"{method.upper() if method != 'tsne' else 't-SNE'} of {len(indices)} test representations (step {run.step})"
    for name, values in _colourings(test, indices).items():
        sec.blocks.append(Figure(embedding_map_figure(coords, values, name, title), caption=f"{title}, coloured by {name}",
                                 alt=f"embedding map coloured by {name}"))
    return sec


# ----------------------------------------------------------------------------- concept confusion


@torch.no_grad()
def concept_confusion(run: Run, max_images: int = 2000, progress: bool = True) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Per concept group: confusion counts ``[G, G]`` (true rows, predicted columns).

    The prediction is the group's concept with the highest cosine to the image in the
    concept space; only test images with exactly one true concept in the group count.

    Returns:
        ``{group: (concept texts, counts [G, G] long)}`` for groups with at least two concepts.
    """
    project_fn, bank = concept_projection(run)
    test = run.dataset("test")
    indices = spread_indices(len(test), max_images)
    z, tgt = extract_features(lambda x: project_fn(run.backbone(x)), Subset(test, indices), device=run.device,
                              progress=progress, targets=ConceptLabeler(bank.texts, test))  # (N, E), (N, K)
    cos = F.normalize(z, dim=-1) @ bank.embeddings.float().cpu().T  # (N, K)
    tgt = tgt.bool()
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


def confusion_blocks(run: Run, progress: bool = True) -> list[Any]:
    """Figures of :func:`concept_confusion`, one per group."""
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
    run: Run,
    n_images: int = 6,
    methods: Sequence[str] | None = None,
    groups: Sequence[str] = ("shape", "colour"),
    max_concepts: int = 3,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    extra_blocks: Sequence[Any] = (),
    scale: str = "image",
) -> Section:
    """``n_images`` test images x explainer methods x each image's concepts.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        n_images: images sampled evenly across the test labels (ignored with ``indices``).
        methods: explainer names (default :func:`~xbyol.explain.concept_heatmaps.default_methods`).
        groups: concept groups whose concepts are explained (see :func:`gallery_concepts`).
        max_concepts: concepts per image.
        indices: explicit test-split indices.
        progress: a progress bar over concepts x methods.
        extra_blocks: blocks shown first (the explanation-metrics table).
        scale: ``"image"`` (each map scaled to its own range) or ``"shared"`` (one range per
            method and concept over the gallery's images; see
            :data:`~xbyol.explain.concept_heatmaps.HEATMAP_SCALES`).
    """
    methods = EXPLAINERS.check(methods if methods is not None else default_methods())
    scale_text = ("each map scaled to its own lowest..highest value: compare the cosines, not the brightness, "
                  "across rows" if scale == "image" else
                  "one scale per method and concept across the gallery's images: a weaker map looks weaker")
    sec = Section("gallery", "Heatmap gallery", blocks=list(extra_blocks),
                  intro="Each row explains the cosine between the image's embedding (in the concept space) and the "
                        "text of one of its concepts; bright = most responsible for that similarity.")
    test = run.dataset("test")
    if indices is None:
        indices = stratified_indices(dataset_labels(test), n_images)
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
            target = parse_target(f"concept:{concept}", run)
            scores, maps = None, {}
            for m in methods:
                scores, one = concept_heatmaps(run, images, concept, [m], target=target, scale=scale)
                maps.update(one)
                bar.update(1)
            assert scores is not None
            for j, p in enumerate(positions):
                mask = concept_mask(samples[p], test, concept)
                cells = [overlay_uri(images[j], maps[m][j], mask=mask) for m in methods]
                results[(p, concept)] = (float(scores[j]), cells)
    items = []
    for pos, (i, s) in enumerate(zip(indices, samples)):
        rows = [GalleryRow(c, *results[(pos, c)]) for c in concepts[pos]]
        items.append(GalleryImage(title=f"test image {int(i)}", subtitle=_subtitle(s, test),
                                  src=image_data_uri(s["image"], min_size=96), rows=rows))
    sec.blocks.append(Gallery(methods=list(methods), images=items, colorbar=colorbar_uri(), scale=scale_text))
    return sec


# ----------------------------------------------------------------------------- augmented views


def views_section(run: Run, n_images: int = 4, seed: int = 0) -> Section:
    """A few training images with two draws of the two BYOL views the objective compares.

    The views come from the run's own augmentation (``cfg.aug``) with a fixed seed, so the
    report is reproducible; they show which changes (crop, flip, colour, blur, solarisation)
    the encoder was asked to ignore.
    """
    sec = Section("views", "Augmented views",
                  intro="What the encoder was trained to see as the same image: each row is one training image and "
                        "two draws of the pair of views its loss compares (view 1 is always blurred; view 2 is "
                        "sometimes solarised). Whatever differs between two views is what the representation learns "
                        "to ignore.")
    views = getattr(run.method, "views", None)
    if views is None or not callable(views):
        sec.missing = f"not applicable: method {run.cfg.method.name!r} does not train on augmented view pairs."
        return sec
    train = run.dataset("train")
    indices = stratified_indices(dataset_labels(train), n_images)
    images = torch.stack([train[i]["image"] for i in indices]).to(run.device)  # (n, 3, H, W) uint8
    draws = [views(images, seed=seed + d) for d in range(2)]  # 2 x (view1, view2), each (n, 3, S, S)

    def shown(x: torch.Tensor) -> torch.Tensor:
        unit = unnormalize(x.float()) if run.cfg.aug.normalize else x.float().clamp(0, 1)
        return (unit * 255).round().to(torch.uint8).cpu()  # (n, 3, S, S)

    pictures = [shown(v) for pair in draws for v in pair]
    classes = list(getattr(train, "class_names", []) or [])
    labels = dataset_labels(train)
    rows = []
    for j, i in enumerate(indices):
        label = classes[labels[i]] if 0 <= labels[i] < len(classes) else ""
        cells = [GridCell(image_data_uri(images[j].cpu(), min_size=80))]
        cells += [GridCell(image_data_uri(p[j], min_size=80)) for p in pictures]
        rows.append(GridRow(f"train image {i}" + (f" ({label})" if label else ""), cells))
    a = run.cfg.aug
    settings = (f"crop area {a.crop_scale_min:g}-{a.crop_scale_max:g}, flip p {a.flip_p:g}, colour jitter p {a.jitter_p:g}, "
                f"grayscale p {a.grayscale_p:g}, blur p {a.blur_p[0]:g}/{a.blur_p[1]:g}, "
                f"solarise p {a.solarize_p[0]:g}/{a.solarize_p[1]:g} (view 1 / view 2)")
    sec.blocks.append(ImageGrid(["original", "view 1", "view 2", "view 1 (2nd draw)", "view 2 (2nd draw)"], rows,
                                caption=f"The run's augmentation (config aug): {settings}; seed {seed}"))
    return sec


# ----------------------------------------------------------------------------- nearest neighbours


def nearest_neighbours(features: torch.Tensor, queries: Sequence[int], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most cosine-similar rows of ``features [N, D]`` to each query row (the query itself excluded).

    Returns:
        ``(indices [Q, k], cosines [Q, k])``, most similar first.
    """
    z = F.normalize(features.float(), dim=1)  # (N, D)
    q = torch.as_tensor(list(queries), dtype=torch.long)
    cos = z[q] @ z.T  # (Q, N)
    cos[torch.arange(len(q)), q] = -float("inf")
    top = cos.topk(min(k, z.shape[0] - 1), dim=1)
    return top.indices, top.values


def same_label_rate(features: torch.Tensor, labels: Sequence[int], k: int) -> float:
    """Fraction of every point's ``k`` nearest neighbours (cosine, itself excluded) that share its label."""
    idx, _ = nearest_neighbours(features, range(features.shape[0]), k)  # (N, k)
    y = torch.as_tensor(list(labels))
    return float((y[idx] == y[:, None]).float().mean())


def random_pick_same_label_rate(labels: Sequence[int]) -> float:
    """Chance that another image drawn at random shares an image's label: ``sum_y n_y (n_y - 1) / (N (N - 1))``."""
    n = len(labels)
    return sum(c * (c - 1) for c in Counter(labels).values()) / (n * (n - 1)) if n > 1 else float("nan")


def neighbours_section(run: Run, n_queries: int = 4, k: int = 5, max_gallery: int = 2000) -> Section:
    """For a few test images, their ``k`` nearest test images under the trained encoder and under random init."""
    sec = Section("neighbours", "Nearest neighbours",
                  intro="For a few test images, the most similar test images by cosine of the representation, under "
                        "the trained encoder and under its randomly initialised twin (same architecture, no training). "
                        "Green border: same label as the query; red: another label.")
    test = run.dataset("test")
    if len(test) < k + 2:
        sec.missing = f"the test split has {len(test)} images; the gallery needs at least {k + 2}."
        return sec
    labels_all = dataset_labels(test)
    pool = stratified_indices(labels_all, max_gallery)  # the searched gallery
    labels = [labels_all[i] for i in pool]
    trained = run.encode("test", pool)  # (N, D)
    random = run.encode("test", pool, fn=run.random_init_backbone(seed=run.cfg.train.seed))  # (N, D)
    queries = stratified_indices(labels, n_queries)  # positions in the pool
    classes = list(getattr(test, "class_names", []) or [])

    def name(y: int) -> str:
        return classes[y] if 0 <= y < len(classes) else str(y)

    rows = []
    for tag, feats in (("trained", trained), ("random init", random)):
        idx, cos = nearest_neighbours(feats, queries, k)
        for q, (ni, nc) in zip(queries, zip(idx.tolist(), cos.tolist())):
            cells = [GridCell(image_data_uri(test[pool[q]]["image"], min_size=80), caption=name(labels[q]))]
            cells += [GridCell(image_data_uri(test[pool[j]]["image"], min_size=80), caption=f"cos {c:.3f}",
                               mark="same" if labels[j] == labels[q] else "other") for j, c in zip(ni, nc)]
            rows.append(GridRow(f"test image {pool[q]}, {tag}", cells))
    rows.sort(key=lambda r: int(r.label.split(",")[0].removeprefix("test image ")))  # trained / random init pairs
    sec.blocks.append(ImageGrid(["query"] + [f"neighbour {j + 1}" for j in range(k)], rows,
                                caption=f"Searched among {len(pool)} test images (cosine of backbone representations)"))
    if len(set(labels)) > 1:
        sec.blocks.append(KeyValues([
            (f"same-label neighbours, trained ({k} nearest, all {len(pool)} images)", same_label_rate(trained, labels, k)),
            ("same-label neighbours, random init", same_label_rate(random, labels, k)),
            ("same-label rate of a random pick", random_pick_same_label_rate(labels)),
        ], caption="How often a neighbour shares the query's label"))
    return sec


# ----------------------------------------------------------------------------- probe confusion


@torch.no_grad()
def probe_confusion(run: Run) -> tuple[list[str], torch.Tensor]:
    """Confusion counts ``[C, C]`` (true rows, predicted columns) of the linear probe of ``xbyol eval`` on the test split."""
    probe, class_names = load_probe(run)
    test = run.dataset("test")
    labels = torch.as_tensor(dataset_labels(test))
    logits = probe(run.encode("test"))  # (N, C) or (N, 1)
    pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)  # (N,)
    c = len(class_names)
    counts = torch.zeros(c, c, dtype=torch.long)
    keep = (labels >= 0) & (labels < c)
    counts.index_put_((labels[keep], pred[keep]), torch.ones(int(keep.sum()), dtype=torch.long), accumulate=True)
    return class_names, counts


def probe_confusion_blocks(run: Run) -> list[Any]:
    """The linear probe's confusion matrix (a figure) and per-class recall (a table)."""
    if not run.paths.probe.is_file():
        return [Note(f"probe confusion matrix: not computed: run `xbyol eval {run.paths.root}` (writes {run.paths.probe.name}).")]
    names, counts = probe_confusion(run)
    total = int(counts.sum())
    accuracy = float(counts.diag().sum()) / max(1, total)
    fig = confusion_figure(counts.numpy(), names, f"linear probe on the test split: accuracy {accuracy:.3f}",
                           xlabel="predicted class", ylabel="true class")
    rows = [[n, int(counts[i].sum()), float(counts[i, i]) / max(1, int(counts[i].sum())),
             names[int(counts[i].masked_fill(torch.arange(len(names)) == i, -1).argmax())] if counts[i].sum() > counts[i, i] else None]
            for i, n in enumerate(names)]
    return [Figure(fig, caption=f"Linear probe ({run.paths.probe.name} of `xbyol eval`) on {total} test images; rows: true class, "
                                "normalised to 1; numbers: counts", alt="probe confusion matrix"),
            Table(["class", "test images", "recall", "most often mistaken for"], rows, caption="Linear probe per class")]
