"""Report sections built from the files of a run directory (no model needed).

Each builder returns a :class:`~xbyol.report.blocks.Section`; a section whose data does not
exist says so and names the command that computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from xbyol import __version__
from xbyol.config import dump, load_run_config
from xbyol.explain.render import png_data_uri
from xbyol.metrics import METRICS
from xbyol.report.artifacts import (
    DISSECT_DIR,
    EVAL_FILE,
    EXPLAIN_EVAL_FILE,
    METRICS_FILE,
    RUN_INFO_FILE,
    RunArtifacts,
    read_json,
)
from xbyol.report.blocks import Code, Figure, KeyValues, Note, Section, Table, flatten, format_value
from xbyol.report.figures import curves_figure

__all__ = [
    "Baseline",
    "concepts_section",
    "dissection_section",
    "collapse_warnings",
    "ema",
    "evaluation_section",
    "explain_metrics_blocks",
    "format_duration",
    "retrieval_section",
    "run_section",
    "training_section",
]

#: eval.json keys that are not evaluator sections
_EVAL_META = ("step", "dataset", "method", "eval_seconds", "stage_seconds", "trained", "random_init")
#: evaluators with their own report section
_OWN_SECTIONS = ("concepts", "retrieval")


@dataclass
class Baseline:
    """Another run's ``eval.json``, shown in a column beside this run's numbers."""

    label: str
    eval: dict[str, Any] | None
    path: Path

    @classmethod
    def read(cls, run_dir: str | Path) -> "Baseline":
        d = Path(run_dir)
        cfg = load_run_config(d)
        return cls(label=f"{cfg.method.name} ({d.name})", eval=read_json(d / EVAL_FILE), path=d)


def format_duration(seconds: float | None) -> str:
    """``3725.2 -> "1 h 02 min 05 s"``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min {sec:02d} s"
    if m:
        return f"{m} min {sec:02d} s"
    return f"{seconds:.1f} s"


def _cmd(command: str, a: RunArtifacts) -> str:
    return f"`xbyol {command} {a.run_dir}`"


def _absent(sec: Section, a: RunArtifacts, name: str, missing: str) -> Section:
    """Mark a section empty: the file could not be read (an error), else it is not there (a note)."""
    if name in a.errors:
        sec.error = a.errors[name]
    else:
        sec.missing = missing
    return sec


# ----------------------------------------------------------------------------- the run


def run_section(a: RunArtifacts, checkpoint_step: int | None = None, datasets: list[str] | None = None) -> Section:
    """Config, dataset, method, duration, hardware, version.

    Args:
        a: the run's files.
        checkpoint_step: step of ``checkpoints/last.pt`` when it was loaded.
        datasets: descriptions of the loaded dataset splits (default: from the config).
    """
    cfg = a.cfg
    info = a.run_info or {}
    hw = info.get("hardware") or {}
    steps = a.metrics["step"] if a.metrics else []
    last_logged = int(max((s for s in steps if not math.isnan(s)), default=0)) or None
    data = "; ".join(datasets) if datasets else f"{cfg.data.name} at {cfg.data.image_size} px" + (
        f" (root {cfg.data.root})" if cfg.data.root else "")
    items: list[tuple[str, Any]] = [
        ("run", cfg.name),
        ("directory", str(a.run_dir)),
        ("method", cfg.method.name),
        ("dataset", data),
        ("backbone", cfg.model.backbone),
        ("batch size x processes", f"{cfg.data.batch_size} x {hw.get('world_size', 1)}"),
        ("optimizer", f"{cfg.train.optimizer}, lr {format_value(cfg.train.lr)}, weight decay {format_value(cfg.train.weight_decay)}"),
        ("steps (checkpoint / planned)", f"{format_value(checkpoint_step)} / {format_value(info.get('total_steps', cfg.train.steps))}"),
        ("last logged step", last_logged),
        ("finished", info.get("finished")),
        ("started", info.get("started")),
        ("training time", format_duration(info.get("duration_s"))),
        ("hardware", ", ".join(f"{k} {v}" for k, v in hw.items() if k in ("device", "gpu", "cpu", "threads", "world_size")) or None),
        ("software", ", ".join(f"{k} {hw[k]}" for k in ("torch", "python") if k in hw) or None),
        ("xbyol version (trained / report)", f"{info.get('xbyol_version', '-')} / {__version__}"),
        ("seed", cfg.train.seed),
        ("precision", cfg.train.precision),
    ]
    blocks: list[Any] = [KeyValues(items)]
    if a.run_info is None:
        why = a.errors.get(RUN_INFO_FILE, "is missing")
        blocks.append(Note(f"{a.run_dir / 'run.json'} {why}: training time and hardware are unknown."))
    if not a.has_checkpoint:
        blocks.append(Note(f"no checkpoint ({a.run_dir / 'checkpoints' / 'last.pt'} is missing): "
                           "sections that need the trained model are skipped."))
    blocks.append(Code(dump(cfg), summary="resolved config (config.yaml)"))
    return Section("run", "Run", blocks)


# ----------------------------------------------------------------------------- training curves


def _series(metrics: dict[str, list[float]], col: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for s, v in zip(metrics["step"], metrics[col]):
        if not (math.isnan(s) or math.isnan(v)):
            xs.append(s)
            ys.append(v)
    return xs, ys


def _line(metrics: dict[str, list[float]], col: str, label: str | None = None, style: str = "-") -> dict[str, Any] | None:
    x, y = _series(metrics, col)
    return {"label": label or col, "x": x, "y": y, "style": style} if x else None


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average ``s_t = weight * s_{t-1} + (1 - weight) * v_t``, ``s_0 = v_0``."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else weight * out[-1] + (1 - weight) * v)
    return out


def _constant(ys: Sequence[float]) -> bool:
    return len(ys) > 1 and max(ys) - min(ys) <= 1e-12 * max(1.0, abs(max(ys)))


def _healthy_dim(metrics: dict[str, list[float]], prefix: str) -> int | None:
    """Embedding dimension ``d`` of a monitored embedding, from its logged healthy std ``1/sqrt(d)``."""
    _, ys = _series(metrics, f"{prefix}_std_healthy") if f"{prefix}_std_healthy" in metrics else ([], [])
    return round(1.0 / ys[-1] ** 2) if ys and ys[-1] > 0 else None


def training_panels(metrics: dict[str, list[float]], smoothing: float = 0.0,
                    batch_size: int | None = None) -> list[dict[str, Any]]:
    """Panels of the training figure: losses, lr, tau, collapse monitors, throughput, the rest.

    Each loss component gets a panel of its own (their scales differ and drawn together
    they cannot be told apart); a component identical to the total is not repeated. A
    metric that never changes (e.g. ``labelled_fraction`` on fully labelled data) gets no
    panel. The collapse monitors carry their healthy reference as a dashed line:
    ``1/sqrt(d)`` for the embedding std (logged as ``*_std_healthy``) and the largest
    possible effective rank, ``min(d, batch_size)``.

    Args:
        metrics: columns of ``metrics.csv``.
        smoothing: ``> 0`` also draws the noisy curves (losses, throughput, other logged
            values) as their :func:`ema` with this weight, the raw values faint behind it;
            schedules (lr, tau) and the sparse collapse monitors are drawn as logged.
        batch_size: rows of the batch the monitors are computed on (caps the rank).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    cols = [c for c in metrics if c not in ("step", "epoch")]
    used: set[str] = set()
    panels: list[dict[str, Any]] = []

    def lines_of(c: str, smooth: bool) -> list[dict[str, Any]]:
        line = _line(metrics, c)
        if line is None:
            return []
        if not smooth or smoothing <= 0 or len(line["y"]) < 3:
            return [line]
        raw = dict(line, label=f"{c} (raw)", faint=True)
        return [raw, dict(line, y=ema(line["y"], smoothing), label=f"{c} (EMA {smoothing:g})")]

    def add(title: str, names: list[str], log: bool = False, extra: list[dict[str, Any]] | None = None,
            smooth: bool = True) -> None:
        used.update(names)
        names = [c for c in names if not _constant(_series(metrics, c)[1])]
        lines = [ln for c in names for ln in lines_of(c, smooth)]
        if lines:
            panels.append({"title": title, "lines": lines + (extra or []), "log": log})

    total = _series(metrics, "loss")[1] if "loss" in cols else []
    components = [c for c in cols if c.startswith("loss_")]
    add("loss", [c for c in cols if c == "loss"])
    for c in components:
        if _series(metrics, c)[1] == total:
            used.add(c)  # the whole loss again (e.g. loss_byol of a byol run)
        else:
            add(f"loss component: {c.removeprefix('loss_')}", [c])
    add("learning rate", [c for c in cols if c == "lr"], smooth=False)  # schedules: exact, nothing to smooth
    add("EMA momentum tau", [c for c in cols if c == "tau"], smooth=False)
    std = [c for c in cols if c.endswith("_std")]
    healthy = [c for c in cols if c.endswith("_std_healthy")]
    add("collapse: embedding std (dashed: healthy)", std, smooth=False,  # sparse: an EMA would lag by many steps
        extra=[ln for ln in (_line(metrics, c, c.replace("_std_healthy", " healthy 1/sqrt(d)"), "--") for c in healthy) if ln])
    used.update(healthy)
    ranks = [c for c in cols if c.endswith("_rank")]
    rank_refs = []
    for c in ranks:
        d = _healthy_dim(metrics, c.removesuffix("_rank"))
        xs, _ = _series(metrics, c)
        if d is not None and xs:
            top = min(d, batch_size) if batch_size else d
            rank_refs.append({"label": f"{c.removesuffix('_rank')} maximum {top}", "x": [xs[0], xs[-1]],
                              "y": [top, top], "style": "--"})
    add("collapse: effective rank (dashed: maximum)", ranks, extra=rank_refs, smooth=False)
    add("throughput (images/s)", [c for c in cols if c == "images_per_s"])
    for c in cols:
        if c not in used:
            add(c, [c])
    return panels


def collapse_warnings(metrics: dict[str, list[float]], batch_size: int | None = None) -> list[str]:
    """Monitors that end below their healthy reference, in words.

    The embedding std warns below ``1/sqrt(d)``; the effective rank below half its maximum
    ``min(d, batch_size)`` (only perfectly isotropic embeddings reach the maximum itself).
    """
    out = []
    for c in metrics:
        if c.endswith("_std") and f"{c}_healthy" in metrics:
            _, ys = _series(metrics, c)
            _, hs = _series(metrics, f"{c}_healthy")
            if ys and hs and ys[-1] < hs[-1]:
                out.append(f"{c} ends at {format_value(ys[-1])}, {100 * ys[-1] / hs[-1]:.0f}% of the healthy "
                           f"1/sqrt(d) = {format_value(hs[-1])}")
        if c.endswith("_rank"):
            d = _healthy_dim(metrics, c.removesuffix("_rank"))
            _, ys = _series(metrics, c)
            if d is not None and ys:
                top = min(d, batch_size) if batch_size else d
                if ys[-1] < top / 2:
                    out.append(f"{c} ends at {format_value(ys[-1])}, below half its maximum {top}")
    return out


def training_section(a: RunArtifacts, smoothing: float = 0.0) -> Section:
    """Training curves from ``metrics.csv``, collapse warnings and a table of the last values."""
    sec = Section("training", "Training curves")
    m = a.metrics
    if m is None:
        return _absent(sec, a, METRICS_FILE, f"not computed: {a.run_dir / 'metrics.csv'} is missing (written by `xbyol train`).")
    batch = int(a.cfg.data.batch_size)
    panels = training_panels(m, smoothing, batch)
    if not panels:
        sec.missing = f"{a.run_dir / 'metrics.csv'} has no logged values yet."
        return sec
    caption = "Logged every train.log_every steps; collapse monitors every train.monitor_every steps."
    if smoothing > 0:
        caption += f" Solid: exponential moving average (weight {smoothing:g}); faint: the logged values."
    sec.blocks.append(Figure(curves_figure(panels), caption=caption, alt="training curves"))
    for w in collapse_warnings(m, batch):
        sec.blocks.append(Note(f"warning: {w} (collapse monitor; see the dashed reference).", level="warning"))
    rows = []
    constant = []
    for c in m:
        if c in ("step", "epoch"):
            continue
        _, ys = _series(m, c)
        if ys:
            rows.append([c, ys[-1], min(ys), max(ys)])
            if _constant(ys) and not c.endswith("_healthy"):
                constant.append(f"{c} = {format_value(ys[-1])}")
    if constant:
        sec.blocks.append(Note(f"constant through the run (no panel): {', '.join(constant)}."))
    sec.blocks.append(Table(["metric", "last", "min", "max"], rows, caption="Logged values"))
    return sec


# ----------------------------------------------------------------------------- evaluation


def _missing_eval(a: RunArtifacts) -> str:
    return f"not computed: run {_cmd('eval', a)} (writes eval.json)."


def _compare(rows_keys: list[tuple[str, str]], columns: list[tuple[str, dict[str, Any] | None]]) -> Table:
    """Rows = (label, dotted key), columns = (header, flat dict)."""
    rows = []
    for label, key in rows_keys:
        rows.append([label] + [None if d is None else d.get(key) for _, d in columns])
    return Table(["metric"] + [h for h, _ in columns], rows)


#: the evaluation table's rows: (label, eval.json key)
_CLASSIFIERS = [("linear probe accuracy", "linear_probe"), ("kNN accuracy", "knn")]


def evaluation_section(a: RunArtifacts, baselines: Sequence[Baseline] = (), checkpoint_step: int | None = None,
                       chance: float | None = None) -> Section:
    """Linear probe and kNN beside chance, the random-init twin and any baseline runs; other evaluators as tables.

    Args:
        a: the run's files.
        baselines: other runs shown in columns.
        checkpoint_step: step of the loaded checkpoint (a stale ``eval.json`` is called out).
        chance: accuracy of always answering the test split's most frequent class (a row of
            its own; ``None`` when the dataset was not loaded).

    A trained encoder below its random-init twin (it happens on short runs) is flagged
    with a warning rather than printed silently.
    """
    sec = Section("evaluation", "Evaluation")
    ev = a.eval
    if ev is None:
        return _absent(sec, a, EVAL_FILE, _missing_eval(a))
    meta = [("evaluated at step", ev.get("step")), ("evaluation time", format_duration(ev.get("eval_seconds")))]
    sec.blocks.append(KeyValues(meta))
    if checkpoint_step is not None and ev.get("step") not in (None, checkpoint_step):
        sec.blocks.append(Note(f"eval.json is from step {ev.get('step')} but the checkpoint is at step {checkpoint_step}: "
                               f"run {_cmd('eval', a)} again."))
    if "trained" in ev:
        trained = ev.get("trained") or {}
        random = ev.get("random_init") if isinstance(ev.get("random_init"), dict) else None
        cols: list[tuple[str, dict[str, Any] | None]] = [(f"{a.cfg.method.name} (this run)", trained)]
        if random is not None:
            cols.append(("random init", random))
            cols.append(("this run - random init", {k: _difference(trained.get(k), random.get(k)) for _, k in _CLASSIFIERS}))
        for b in baselines:
            cols.append((b.label, None if b.eval is None else b.eval.get("trained")))
        table = _compare(_CLASSIFIERS, cols)
        if chance is not None:
            table.rows.append(["chance (always the most frequent test class)", chance]
                              + [chance if h == "random init" else None for h, _ in cols[1:]])
        table.caption = ("Frozen-feature classification on the test split (random init: same architecture, untrained; "
                         "one training seed, so a difference of a few points may be noise)")
        sec.blocks.append(table)
        if random is not None:
            below = [(label, trained[k], random[k]) for label, k in _CLASSIFIERS
                     if isinstance(trained.get(k), (int, float)) and isinstance(random.get(k), (int, float))
                     and trained[k] < random[k]]
            if below:
                what = "; ".join(f"{label} {format_value(t)} < {format_value(r)}" for label, t, r in below)
                sec.blocks.append(Note(f"warning: the trained encoder is below its random-init twin ({what}). "
                                       "Training has not yet helped these features: the run may be too short, the "
                                       "learning rate off, or the representation collapsing (see the collapse monitors).",
                                       level="warning"))
        if chance is not None:
            weak = [label for label, k in _CLASSIFIERS if isinstance(trained.get(k), (int, float)) and trained[k] <= chance]
            if weak:
                sec.blocks.append(Note(f"warning: {' and '.join(weak)} at or below chance ({format_value(chance)}): no "
                                       "better than always answering the most frequent class.", level="warning"))
    else:
        sec.blocks.append(Note("no linear probe / kNN: the dataset has a single class."))
    for b in baselines:
        if b.eval is None:
            sec.blocks.append(Note(f"baseline {b.label}: {b.path / 'eval.json'} is missing (run `xbyol eval {b.path}`)."))
    for name, value in ev.items():
        if name in _EVAL_META or name in _OWN_SECTIONS or not isinstance(value, dict):
            continue
        flat = flatten(value)
        sec.blocks.append(Table(["key", "value"], [[k, v] for k, v in flat.items()], caption=f"evaluator: {name}"))
    return sec


def _difference(x: Any, y: Any) -> float | None:
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return float(x) - float(y)
    return None


def _group_table(caption: str, groups: list[str], columns: list[tuple[str, dict[str, Any] | None]]) -> Table:
    rows = [[g] + [None if d is None else d.get(g) for _, d in columns] for g in groups]
    return Table(["group"] + [h for h, _ in columns], rows, caption=caption)


def concepts_section(a: RunArtifacts, baselines: Sequence[Baseline] = ()) -> Section:
    """SCS, concept accuracy per group (with chance), SSCS per mask group, beside baseline runs."""
    sec = Section("concepts", "Concept scores",
                  intro="SCS: mean cosine of each test image's representation (in the concept space) with its own "
                        "concepts, and with the others (non-match); the margin is their difference. Concept accuracy: "
                        "the highest-cosine concept of a group is one of the image's. SSCS: mean IoU of per-pixel "
                        "concept maps with the ground-truth segmentation.")
    ev = a.eval
    if ev is None:
        return _absent(sec, a, EVAL_FILE, _missing_eval(a))
    c = ev.get("concepts")
    if not isinstance(c, dict):
        sec.missing = ("not applicable: eval.json has no concept scores (the dataset has no labelled concepts, or only "
                       f"class names for a {a.cfg.method.name} run); run {_cmd('eval', a)} after adding concepts.")
        return sec
    label = f"{a.cfg.method.name} ({c.get('map', '?')} map)"
    others = [(f"{b.label} ({(b.eval or {}).get('concepts', {}).get('map', '?')} map)", (b.eval or {}).get("concepts"))
              for b in baselines]
    cols = [(label, c)] + others
    scalar_keys = [("SCS (match)", "scs"), ("SCS (non-match)", "scs_nonmatch"), ("SCS margin", "scs_margin"),
                   ("images scored", "n_images"), ("concepts in the bank", "n_concepts")]
    t = _compare([(lbl, k) for lbl, k in scalar_keys if k in c], cols)
    t.caption = "Semantic consistency (SCS) on the test split"
    sec.blocks.append(t)
    acc = c.get("concept_accuracy")
    if isinstance(acc, dict):
        groups = [g for g in acc if not g.endswith("_chance")]
        chance = {g: acc.get(f"{g}_chance") for g in groups}
        acc_cols: list[tuple[str, dict[str, Any] | None]] = [(label, acc), ("chance", chance)]
        acc_cols += [(h, (d or {}).get("concept_accuracy")) for h, d in others]
        sec.blocks.append(_group_table("Concept accuracy per group (chance: uniform guess over the group)", groups, acc_cols))
    sscs = c.get("sscs")
    if isinstance(sscs, dict):
        groups = list(sscs)
        s_cols: list[tuple[str, dict[str, Any] | None]] = [(f"{label} SSCS", sscs)]
        if isinstance(c.get("sscs_gt_foreground"), dict):
            s_cols.append(("SSCS with ground-truth foreground", c["sscs_gt_foreground"]))
        s_cols += [(f"{h} SSCS", (d or {}).get("sscs")) for h, d in others]
        level = c.get("sscs_background_level")
        sec.blocks.append(_group_table(
            f"SSCS (mean IoU) per mask group; background where every cosine < {format_value(level)}", groups, s_cols))
    elif "concept_accuracy" in c:
        sec.blocks.append(Note("SSCS not computed: the dataset has no concept masks."))
    known = {"map", "n_concepts", "scs", "scs_nonmatch", "scs_margin", "n_images", "concept_accuracy", "sscs",
             "sscs_gt_foreground", "sscs_background_level"}
    rest = {k: v for k, v in c.items() if k not in known}
    if rest:
        sec.blocks.append(Table(["key", "value"], [[k, v] for k, v in flatten(rest).items()], caption="other concept scores"))
    return sec


def retrieval_section(a: RunArtifacts, baselines: Sequence[Baseline] = ()) -> Section:
    """Image<->text Recall@K and median rank with chance levels (cross-modal runs)."""
    sec = Section("retrieval", "Retrieval")
    ev = a.eval
    if ev is None:
        return _absent(sec, a, EVAL_FILE, _missing_eval(a))
    r = ev.get("retrieval")
    if not isinstance(r, dict):
        sec.missing = (f"not applicable: method {a.cfg.method.name!r} has no text tower "
                       "(retrieval is evaluated for xmodal and clip runs).")
        return sec
    directions = [d for d in ("image_to_text", "text_to_image") if isinstance(r.get(d), dict)]
    keys = [k for k in (r[directions[0]] if directions else {}) if not k.startswith("chance_") and k not in ("queries", "gallery")]
    columns = []
    for d in directions:
        columns.append((d.replace("_", " "), r[d]))
        columns.append(("chance", {k: r[d].get(f"chance_{k}") for k in keys}))
    for b in baselines:
        br = (b.eval or {}).get("retrieval")
        if isinstance(br, dict):  # only cross-modal baselines (e.g. clip) have retrieval numbers
            for d in directions:
                columns.append((f"{b.label} {d.replace('_', ' ')}", br.get(d)))
    t = _compare([(k, k) for k in keys + ["queries", "gallery"]], columns)
    t.caption = "Test split; R@K: fraction of queries with a correct item in the top K (higher is better); median rank: lower is better"
    sec.blocks.append(t)
    emb = r.get("embeddings")
    if isinstance(emb, dict):
        sec.blocks.append(KeyValues(list(emb.items()), caption="Collapse check of the retrieval embeddings "
                                    "(std per dimension vs the healthy 1/sqrt(d), RankMe)"))
    return sec


# ----------------------------------------------------------------------------- explanation metrics


#: explain_eval.json keys that are not named like the metric functions
_METRIC_ALIASES = {"iou": "mask_iou", "randomization_corr": "model_randomization"}


def _metric_header(key: str) -> str:
    """``key`` in words, with an arrow for the better direction when the metric is known."""
    meta = METRICS.get(_METRIC_ALIASES.get(key, key))
    label = key.replace("_", " ")
    if meta is not None:
        return f"{label} {'↑' if meta['higher_is_better'] else '↓'}"
    if key.startswith("ms_per_") or key.endswith("_seconds"):
        return f"{label} ↓"
    return label


def explain_metrics_blocks(a: RunArtifacts) -> list[Any]:
    """The explanation-metrics table of ``explain_eval.json`` (``{"methods": {name: {metric: value}}}``)."""
    ee = a.explain_eval
    if ee is None:
        if EXPLAIN_EVAL_FILE in a.errors:
            return [Note(f"Explanation metrics could not be read: {a.errors[EXPLAIN_EVAL_FILE]}")]
        return [Note(f"Explanation metrics not computed: run {_cmd('explain-eval', a)} (writes explain_eval.json).")]
    methods = ee.get("methods")
    blocks: list[Any] = []
    if isinstance(methods, dict) and methods:
        metrics: list[str] = []
        for vals in methods.values():
            for k in flatten(vals if isinstance(vals, dict) else {"value": vals}):
                if k not in metrics:
                    metrics.append(k)
        rows = []
        for name, vals in methods.items():
            flat = flatten(vals if isinstance(vals, dict) else {"value": vals})
            rows.append([name] + [flat.get(k) for k in metrics])
        blocks.append(Table(["method"] + [_metric_header(k) for k in metrics], rows,
                            caption="Explanation metrics (explain_eval.json); arrows: the better direction"))
    rest = {k: v for k, v in ee.items() if k != "methods"}
    if rest:
        blocks.append(KeyValues(list(flatten(rest).items()), caption="explanation-metric settings"))
    if not blocks:
        blocks.append(Note(f"{a.run_dir / 'explain_eval.json'} holds no metrics."))
    return blocks


# ----------------------------------------------------------------------------- dissection


def _cell(key: str, text: str, iou: float) -> Any:
    """A ``units.csv`` value for the table: IoU as a number, detector as a boolean."""
    if key == "iou":
        return iou
    if key == "detector" and text in ("True", "False", "true", "false", "1", "0"):
        return text in ("True", "true", "1")
    return text


def dissection_section(a: RunArtifacts, top_units: int = 10, max_figure_bytes: int = 4_000_000) -> Section:
    """Per dissected layer: detector counts per concept group, the top units, the figures."""
    sec = Section("dissection", "Network dissection",
                  intro="A unit detects a concept when the IoU of its thresholded activation map with the concept's "
                        "segmentation exceeds the threshold (Bau et al. 2017).")
    if not a.dissections:
        return _absent(sec, a, DISSECT_DIR, f"not computed: run {_cmd('dissect', a)} (writes {a.run_dir / 'dissect'}/<layer>/summary.json).")
    for d in a.dissections:
        s = d.summary
        where = d.directory.relative_to(a.run_dir)
        labels = {"layer": "layer", "num_images": "images dissected", "quantile": "activation quantile",
                  "iou_threshold": "IoU threshold", "exact_thresholds": "exact thresholds", "units": "units",
                  "detectors": "detector units", "unique_paper": "unique concepts (paper rule)",
                  "unique_release": "unique concepts (release rule)"}
        kv = [(label, s[k]) for k, label in labels.items() if k in s]
        sec.blocks.append(KeyValues(kv, caption=f"{where}"))
        per_group = [k for k in ("detectors_per_group", "unique_paper_per_group", "unique_release_per_group")
                     if isinstance(s.get(k), dict)]
        if per_group:
            groups = list(dict.fromkeys(g for k in per_group for g in s[k]))
            cols = {"detectors_per_group": "detector units", "unique_paper_per_group": "unique concepts (paper rule)",
                    "unique_release_per_group": "unique concepts (release rule)"}
            sec.blocks.append(Table(["group"] + [cols[k] for k in per_group],
                                    [[g] + [s[k].get(g) for k in per_group] for g in groups],
                                    caption="Detectors per concept group"))
        if d.units:
            def iou(row: dict[str, str]) -> float:
                try:
                    return float(row.get("iou", "nan"))
                except ValueError:
                    return math.nan

            best = sorted(d.units, key=lambda r: -iou(r) if not math.isnan(iou(r)) else math.inf)[:top_units]
            keys: list[str] = [k for k in ("unit", "concept", "group", "iou", "detector") if k in best[0]]
            rows = [[_cell(k, r[k], iou(r)) for k in keys] for r in best]
            sec.blocks.append(Table(keys, rows, caption=f"Top {len(rows)} units by IoU"))
        for p in d.figures:
            if p.stat().st_size <= max_figure_bytes:
                sec.blocks.append(Figure(png_data_uri(p.read_bytes()), caption=str(p.relative_to(a.run_dir)), alt=p.name))
            else:
                sec.blocks.append(Note(f"{p.relative_to(a.run_dir)} is too large to embed ({p.stat().st_size} bytes)."))
    return sec
