"""Linear probe and kNN beside chance, the random-init twin and baseline runs; other evaluators as tables."""

from __future__ import annotations

from typing import Any, Sequence

from xbyol.report import live
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import KeyValues, Note, Section, Table, flatten, format_value
from xbyol.report.context import Baseline, ReportContext, absent, cmd
from xbyol.report.sections.run import format_duration
from xbyol.rundir import EVAL

__all__ = ["build", "compare", "evaluation_section", "missing_eval"]

#: eval.json keys that are not evaluator sections
_EVAL_META = ("step", "dataset", "method", "eval_seconds", "stage_seconds", "trained", "random_init")
#: evaluators with their own report section
_OWN_SECTIONS = ("concepts", "retrieval")


def missing_eval(a: RunArtifacts) -> str:
    return f"not computed: run {cmd('eval', a)} (writes eval.json)."


def compare(rows_keys: list[tuple[str, str]], columns: list[tuple[str, dict[str, Any] | None]]) -> Table:
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
        return absent(sec, a, EVAL, missing_eval(a))
    meta = [("evaluated at step", ev.get("step")), ("evaluation time", format_duration(ev.get("eval_seconds")))]
    sec.blocks.append(KeyValues(meta))
    if checkpoint_step is not None and ev.get("step") not in (None, checkpoint_step):
        sec.blocks.append(Note(f"eval.json is from step {ev.get('step')} but the checkpoint is at step {checkpoint_step}: "
                               f"run {cmd('eval', a)} again."))
    if "trained" in ev:
        trained = ev.get("trained") or {}
        random = ev.get("random_init") if isinstance(ev.get("random_init"), dict) else None
        cols: list[tuple[str, dict[str, Any] | None]] = [(f"{a.cfg.method.name} (this run)", trained)]
        if random is not None:
            cols.append(("random init", random))
            cols.append(("this run - random init", {k: _difference(trained.get(k), random.get(k)) for _, k in _CLASSIFIERS}))
        for b in baselines:
            cols.append((b.label, None if b.eval is None else b.eval.get("trained")))
        table = compare(_CLASSIFIERS, cols)
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
            sec.blocks.append(Note(f"baseline {b.label}: {b.path / EVAL} is missing (run `xbyol eval {b.path}`)."))
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


def build(ctx: ReportContext) -> Section:
    """The section, with the probe's confusion matrix when the model is loaded."""
    sec = evaluation_section(ctx.a, ctx.baselines, ctx.step, ctx.chance)
    if sec.missing is None and ctx.a.eval is not None and "trained" in ctx.a.eval:
        if ctx.run is None:
            sec.blocks.append(Note(f"probe confusion matrix {ctx.no_model}"))
        else:
            ctx.say("probe confusion matrix")
            sec.blocks.extend(live.probe_confusion_blocks(ctx.run))
    return sec
