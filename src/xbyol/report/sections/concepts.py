"""Concept scores: SCS, concept accuracy per group (with chance), SSCS per mask group, beside baseline runs."""

from __future__ import annotations

from typing import Any, Sequence

from xbyol.report import live
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Note, Section, Table, flatten, format_value
from xbyol.report.context import Baseline, ReportContext, absent, cmd
from xbyol.report.sections.evaluation import compare, missing_eval
from xbyol.rundir import EVAL

__all__ = ["build", "concepts_section"]


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
        return absent(sec, a, EVAL, missing_eval(a))
    c = ev.get("concepts")
    if not isinstance(c, dict):
        sec.missing = ("not applicable: eval.json has no concept scores (the dataset has no labelled concepts, or only "
                       f"class names for a {a.cfg.method.name} run); run {cmd('eval', a)} after adding concepts.")
        return sec
    label = f"{a.cfg.method.name} ({c.get('map', '?')} map)"
    others = [(f"{b.label} ({(b.eval or {}).get('concepts', {}).get('map', '?')} map)", (b.eval or {}).get("concepts"))
              for b in baselines]
    cols = [(label, c)] + others
    scalar_keys = [("SCS (match)", "scs"), ("SCS (non-match)", "scs_nonmatch"), ("SCS margin", "scs_margin"),
                   ("images scored", "n_images"), ("concepts in the bank", "n_concepts")]
    t = compare([(lbl, k) for lbl, k in scalar_keys if k in c], cols)
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


def build(ctx: ReportContext) -> Section:
    """The section, with the concept confusion figures when the model is loaded."""
    sec = concepts_section(ctx.a, ctx.baselines)
    if sec.missing is None and ctx.opts.confusion:
        if ctx.run is None:
            sec.blocks.append(Note(f"concept confusion {ctx.no_model}"))
        else:
            ctx.say("concept confusion")
            sec.blocks.extend(live.confusion_blocks(ctx.run, progress=ctx.opts.progress))
    return sec
