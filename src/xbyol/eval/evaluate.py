"""``xbyol eval RUN_DIR``: frozen-feature linear probe and weighted kNN of the trained
encoder, always beside the same evaluation of a randomly initialised twin, followed by
every applicable registered evaluator (concept scores, retrieval, ...)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from xbyol.eval.evaluators import EVALUATORS
from xbyol.eval.knn import knn_accuracy
from xbyol.eval.linear_probe import linear_probe, probe_to_torch
from xbyol.run import load_run
from xbyol.rundir import RunDir, extract_features


class StageTimer:
    """Times the named stages of a long job; ``verbose`` prints each start and end on stderr.

    ``seconds`` maps stage name -> wall time, written into the job's JSON.
    """

    def __init__(self, prefix: str, verbose: bool) -> None:
        self.prefix, self.verbose = prefix, verbose
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.verbose:
            print(f"{self.prefix}: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = round(dt, 3)
        if self.verbose:
            print(f"{self.prefix}: {name} done in {dt:.1f} s", file=sys.stderr, flush=True)


def probe_and_knn(
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    train_set,
    test_set,
    cfg,
    device: torch.device,
    progress: bool = False,
    stage: StageTimer | None = None,
    label: str = "trained",
) -> tuple[dict[str, float], Any]:
    """Linear-probe and kNN accuracy of ``encode_fn`` (preprocessed images -> [B, D]).

    ``stage`` times the features, probe and kNN stages under ``label``.
    """
    stage = stage or StageTimer("eval", verbose=False)
    with stage(f"{label}: features of {len(train_set)} train + {len(test_set)} test images"):
        tr_x, tr_y = extract_features(encode_fn, train_set, device=device, progress=progress)
        te_x, te_y = extract_features(encode_fn, test_set, device=device, progress=progress)
    return probe_and_knn_of_features(tr_x, tr_y, te_x, te_y, cfg, stage, label)


def probe_and_knn_of_features(
    tr_x: torch.Tensor,
    tr_y: torch.Tensor,
    te_x: torch.Tensor,
    te_y: torch.Tensor,
    cfg,
    stage: StageTimer | None = None,
    label: str = "trained",
) -> tuple[dict[str, float], Any]:
    """Linear-probe and kNN accuracy of features already extracted (train ``[N, D]``, ``[N]``; test ``[M, D]``, ``[M]``),
    with the settings of ``cfg.eval`` and the probe seeded by ``cfg.train.seed``; so callers that need the
    features for more than the probe (e.g. a concept map) extract them once."""
    stage = stage or StageTimer("eval", verbose=False)
    with stage(f"{label}: linear probe"):
        probe = linear_probe(tr_x, tr_y, te_x, te_y, C=cfg.eval.probe_c, max_iter=cfg.eval.probe_max_iter, seed=cfg.train.seed)
    with stage(f"{label}: kNN"):
        knn = knn_accuracy(tr_x, tr_y, te_x, te_y, k=cfg.eval.knn_k, t=cfg.eval.knn_t)
    return {"linear_probe": float(probe["accuracy"]), "knn": float(knn)}, probe["classifier"]


def raw_pixel_scores(train_set, test_set, cfg) -> dict[str, float]:
    """The raw-pixel baseline: probe and kNN on the flattened preprocessed images ``[N, 3HW]``,
    standardised with the train split's statistics (the same protocol as the encoders)."""
    tr_x, tr_y = extract_features(lambda x: x.flatten(1), train_set)  # (N, 3HW)
    te_x, te_y = extract_features(lambda x: x.flatten(1), test_set)
    mean, std = tr_x.mean(0), tr_x.std(0).clamp_min(1e-6)
    tr_x, te_x = (tr_x - mean) / std, (te_x - mean) / std
    probe = linear_probe(tr_x, tr_y, te_x, te_y, C=cfg.eval.probe_c, max_iter=cfg.eval.probe_max_iter, seed=cfg.train.seed)
    knn = knn_accuracy(tr_x, tr_y, te_x, te_y, k=cfg.eval.knn_k, t=cfg.eval.knn_t)
    return {"linear_probe": float(probe["accuracy"]), "knn": float(knn)}


def evaluate(run_dir: str | Path, device: str = "cpu", progress: bool = True, only: list[str] | None = None) -> dict[str, Any]:
    """Evaluate a run; writes ``RUN_DIR/eval.json`` and ``RUN_DIR/probe.pt`` under the run's lock; returns the results.

    Args:
        run_dir: a directory written by ``xbyol train``.
        device: where to run the encoder.
        progress: show progress bars.
        only: names of registered evaluators to run (default: all applicable).
    """
    with RunDir(run_dir).lock():
        return _evaluate(run_dir, device, progress, only)


def _evaluate(run_dir: str | Path, device: str, progress: bool, only: list[str] | None) -> dict[str, Any]:
    stage = StageTimer("eval", verbose=progress)
    t0 = time.perf_counter()
    with stage("loading the run and its datasets"):
        run = load_run(run_dir, device=device)
        cfg = run.cfg
        train_set, test_set = run.dataset("train"), run.dataset("test")
    results: dict[str, Any] = {"step": run.step, "dataset": cfg.data.name, "method": cfg.method.name,
                               "split": "validation" if cfg.data.validation else "test"}
    if len(train_set.class_names) > 1:
        trained, classifier = probe_and_knn(run.method.encode, train_set, test_set, cfg, run.device, progress, stage)
        results["trained"] = trained
        lin = probe_to_torch(classifier)
        probe = {"weight": lin.weight.detach().cpu(), "bias": lin.bias.detach().cpu(), "class_names": list(train_set.class_names)}
        run.paths.write(run.paths.probe, lambda f: torch.save(probe, f))
        if cfg.eval.baseline:
            rand = run.random_init_backbone(seed=cfg.train.seed)
            results["random_init"], _ = probe_and_knn(rand, train_set, test_set, cfg, run.device, progress, stage, "random init")
    for name in EVALUATORS.names():
        if only is not None and name not in only:
            continue
        with stage(name):
            res = EVALUATORS.create(name, run=run)
        if res is not None:
            results[name] = res
    unreadable = {split: n for split, ds in (("train", train_set), ("test", test_set)) if (n := getattr(ds, "load_failures", 0))}
    for split, n in unreadable.items():
        print(f"{cfg.data.name}: {n} of {len(run.dataset(split))} files of the {split} split unreadable, "
              "replaced by their neighbours", file=sys.stderr, flush=True)
    if unreadable:
        results["unreadable_files"] = unreadable
    results["eval_seconds"] = time.perf_counter() - t0
    results["stage_seconds"] = stage.seconds
    run.paths.write_json(run.paths.eval, results)
    return results


def format_results(results: dict[str, Any]) -> str:
    """A plain-text table: the core probes side by side, then each evaluator's section."""
    lines = []
    if results.get("split") == "validation":
        lines.append("scored on the validation split (data.validation: the end of the training images)")
    if "trained" in results:
        rows: list[tuple[str, ...]] = [("", "trained", "random init")]
        for key in ("linear_probe", "knn"):
            r = results.get("random_init", {}).get(key)
            rows.append((key.replace("_", " "), f"{results['trained'][key]:.4f}", "-" if r is None else f"{r:.4f}"))
        lines.append(_table(rows))
    for name, value in results.items():
        if name in ("trained", "random_init", "step", "dataset", "method", "eval_seconds", "stage_seconds") or not isinstance(value, dict):
            continue
        lines.append(f"\n[{name}]")
        lines.append(_format_section(value))
    return "\n".join(lines)


def _format_section(d: dict[str, Any], indent: str = "") -> str:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{indent}{k}:")
            out.append(_format_section(v, indent + "  "))
        elif isinstance(v, float):
            out.append(f"{indent}{k}: {v:.4f}")
        elif isinstance(v, (int, str)) or v is None:
            out.append(f"{indent}{k}: {v}")
        elif isinstance(v, list) and len(v) <= 12:
            out.append(f"{indent}{k}: {v}")
    return "\n".join(out)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
