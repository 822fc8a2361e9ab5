"""Image<->text Recall@K and median rank with chance levels (cross-modal runs)."""

from __future__ import annotations

from typing import Sequence

from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import KeyValues, Section
from xbyol.report.context import Baseline, ReportContext, absent
from xbyol.report.sections.evaluation import compare, missing_eval
from xbyol.rundir import EVAL

__all__ = ["build", "retrieval_section"]


def retrieval_section(a: RunArtifacts, baselines: Sequence[Baseline] = ()) -> Section:
    """Image<->text Recall@K and median rank with chance levels (cross-modal runs)."""
    sec = Section("retrieval", "Retrieval")
    ev = a.eval
    if ev is None:
        return absent(sec, a, EVAL, missing_eval(a))
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
    t = compare([(k, k) for k in keys + ["queries", "gallery"]], columns)
    t.caption = "Test split; R@K: fraction of queries with a correct item in the top K (higher is better); median rank: lower is better"
    sec.blocks.append(t)
    emb = r.get("embeddings")
    if isinstance(emb, dict):
        sec.blocks.append(KeyValues(list(emb.items()), caption="Collapse check of the retrieval embeddings "
                                    "(std per dimension vs the isotropic 1/sqrt(d), RankMe)"))
    return sec


def build(ctx: ReportContext) -> Section:
    return retrieval_section(ctx.a, ctx.baselines)
