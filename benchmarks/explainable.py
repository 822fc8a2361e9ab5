"""Explainable BYOL vs plain BYOL with a post-hoc concept map, and their baselines, same budget.

Datasets: ``shapes`` (the default; 24 concepts in four groups, masks for SSCS) and
``fashion-mnist`` (``--dataset fashion-mnist``; the ten class names are the concepts, no
masks, so no SSCS; the preset ``configs/fashion_mnist_byol.yaml`` with ``--steps``).

Every trained variant uses the same config (backbone, heads, optimiser, batch, steps);
only the method options differ. Per training seed (``train.seed`` and ``data.seed``):

- ``byol``: BYOL; its concept map is fitted after training on the same training labels
  with the same semantic loss (``xbyol.concepts.projection``), once on the projector
  output (the same architecture as xbyol's map) and once on the backbone representation;
- ``xbyol``: explainable BYOL (semantic loss weight 1, concept-attention fusion);
- ``xbyol_nofusion``: the same without the concept-attention fusion;
- ``xbyol_w<lambda>``: the semantic weight set to lambda (e.g. ``xbyol_w0.3``);
- ``byol_ft``: the seed's BYOL run fine-tuned on the concept labels for the same number of
  steps with the semantic loss alone (``method.semantic.byol_weight=0``, no fusion,
  ``train.init_from``), its learned map scored;
- ``byol_ft_matched``: the label-matched fine-tune: BYOL for ``steps // 2`` (``byol_half``), then
  fine-tuned like ``byol_ft`` for the other half, the same total steps as xbyol;
- ``supervised_ml``: a supervised model (the backbone plus a linear head over the concepts: binary
  cross-entropy where concepts are multi-label (shapes), softmax cross-entropy where each image has
  one (class names); same budget, light augmentation as in ``benchmarks/quality.py``), post-hoc map
  on its backbone; ``supervised_head``: the same model read through its own head (no SCS: a head
  has no concept-space vector);
- ``random_init`` (no training): the backbone freshly initialised with the seed, post-hoc
  map on the backbone representation;
- ``raw_pixels`` (no training): the preprocessed image flattened to ``3 * H * W`` values,
  post-hoc map on it (no spatial map, so no SSCS).

No features are standardised for any row: every post-hoc map is the same linear map
fitted the same way on the unchanged features. On data without masks (Fashion-MNIST)
each model encodes each split once, and that one pass feeds the probe, kNN and every
concept map (``scores_without_masks``; the same numbers as ``xbyol eval`` and
``concept_scores``, which would encode the training split up to three times). Each run is scored by the core
evaluation (linear probe, kNN; label = shape of the largest object) and the ``concepts``
evaluator (SCS, concept accuracy, SSCS with its chance level and resolution ceiling).
With ``--explain-eval`` the byol, xbyol and random-init encoders of each seed are also
graded by ``xbyol explain-eval`` (a second section). ``--nulls`` scores the reference
representations of ``xbyol.eval.concept_nulls`` (chance, label prior, per-image optimum: the
table's last columns); ``--rank-faithfulness`` runs ``xbyol.explain.rank_faithfulness`` (the
concept "why" against a permuted-names null, on a common rank scale) on every row.

Label matching: every post-hoc map is fitted on the training images the probe uses (shapes:
all of them, the images xbyol trains on; Fashion-MNIST: the first ``--eval-train``, so only
``--eval-train 60000`` matches xbyol, which draws from all 60,000). Where the test set is
fixed (Fashion-MNIST), per-image values are stored next to each score (``per_image``) for
paired test-set intervals (``benchmarks/verdicts.py``).

Results accumulate in ``--json`` (default ``benchmarks/results/explainable.json``), one
entry per (seed, variant); an entry already there is reused, so seeds and variants can be
added one command at a time. The tables report mean +- sd over the seeds present.

Usage (CPU; about 10 minutes per trained variant and seed on a shared 2-core machine)::

    python benchmarks/explainable.py --seeds 0 1 2 --write

Fashion-MNIST (the table in BENCHMARKS.md; about 14 minutes per seed for the four default rows at 350 x 128 on one
thread of a shared machine; the probe, kNN bank and post-hoc maps are fitted on the first ``--eval-train`` training
images, 10,000 by default)::

    python benchmarks/explainable.py --dataset fashion-mnist --seeds 0 1 2 --threads 1 --steps 350 --batch-size 128 \
        --variants raw_pixels random_init byol xbyol byol_ft supervised_ml --write
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from bench_markdown import write_section  # noqa: E402
from bench_seeds import mean_sd, read_results, write_results  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

SECTION = "## Explainable BYOL (shapes)"
FASHION_SECTION = "## Explainable BYOL (Fashion-MNIST)"
FASHION_MATCHED_SECTION = "## Explainable BYOL (Fashion-MNIST, label-matched, full training split)"
FASHION_PRESET = Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist_byol.yaml"
EXPLAIN_SECTION = "## Explanation metrics on trained encoders (shapes)"
GROUPS = {"shapes": ("shape", "colour", "size", "position"), "fashion-mnist": ("class",)}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "explainable.json"
FASHION_JSON = Path(__file__).resolve().parent / "results" / "explainable_fashion_mnist.json"
# per dataset: the defaults of the budget flags (None: the flag must match the dataset) and the probe's label
DATASET_DEFAULTS = {
    "shapes": {"batch_size": 96, "num_train": 4000, "num_test": 1000, "image_size": 32, "steps": 100},
    "fashion-mnist": {"batch_size": 256, "num_train": 60000, "num_test": 10000, "image_size": 28, "steps": 600,
                      "eval_train": 10000},
}
PROBE_LABEL = {"shapes": ("shape of the largest object", "0.200"), "fashion-mnist": ("garment class", "0.100")}
UNTRAINED = ("random_init", "raw_pixels")
NEEDS_BYOL = ("random_init", "raw_pixels", "byol_ft", "supervised_ml", "supervised_head")  # reuse the seed's BYOL run
SUPERVISED = ("supervised_ml", "supervised_head")  # trained by score_supervised, not by xbyol.train
# rows whose concept "why" is checked by --rank-faithfulness (every row with a concept map or head)
RANK_ROWS = ("raw_pixels", "random_init", "byol", "xbyol", "byol_ft", "byol_ft_matched", "supervised_ml", "supervised_head")
LABELS = {
    "raw_pixels": "raw pixels + post-hoc map",
    "random_init": "random init + post-hoc map (backbone)",
    "byol": "BYOL + post-hoc map (projector)",
    "byol_backbone": "BYOL + post-hoc map (backbone)",
    "xbyol": "xbyol (learned map)",
    "xbyol_nofusion": "xbyol without fusion",
    "byol_ft": "BYOL fine-tuned on the concept labels (semantic loss only)",
    "byol_half": "BYOL, half the steps + post-hoc map (projector)",
    "byol_ft_matched": "BYOL (half the steps) fine-tuned on the labels (the other half)",
    "supervised_ml": "supervised + post-hoc map (backbone)",
    "supervised_head": "supervised, read through its own head",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(DATASET_DEFAULTS), default="shapes")
    p.add_argument("--steps", type=int, default=None, help="shapes: 100, fashion-mnist: 600")
    p.add_argument("--batch-size", type=int, default=None, help="shapes: 96, fashion-mnist: 256")
    p.add_argument("--num-train", type=int, default=None, help="shapes only (4000); fashion-mnist uses its 60,000")
    p.add_argument("--num-test", type=int, default=None, help="shapes only (1000); fashion-mnist uses its 10,000")
    p.add_argument("--image-size", type=int, default=None, help="shapes: 32, fashion-mnist: 28")
    p.add_argument("--eval-train", type=int, default=None,
                   help="fashion-mnist only: the first N training images fit the probe, kNN bank and post-hoc maps of "
                   "every row (default 10000; 60000 = all); scores are always on the whole test split")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (train.seed and data.seed)")
    p.add_argument("--variants", nargs="*", default=["raw_pixels", "random_init", "byol", "xbyol"],
                   help="rows: raw_pixels, random_init, byol, xbyol, xbyol_nofusion, xbyol_w<lambda>")
    p.add_argument("--explain-eval", action="store_true", help="also grade the explainers of byol, xbyol, random init")
    p.add_argument("--explain-images", type=int, default=16, help="test images for explain-eval")
    p.add_argument("--faithfulness", action="store_true",
                   help="also measure the faithfulness of explain_embedding on byol, xbyol, random init")
    p.add_argument("--rank-faithfulness", action="store_true",
                   help="also run the rank-scale faithfulness check against its permuted-names null on every row")
    p.add_argument("--nulls", action="store_true",
                   help="also score the reference representations (chance, label prior, per-image optimum)")
    p.add_argument("--out", default=None,
                   help="run directories (default runs/bench_<the results file's name>, e.g. runs/bench_explainable: "
                   "one folder per results file, so two budgets never share a seed's runs)")
    p.add_argument("--json", default=None, help="results file (entries already there are reused; default "
                   "results/explainable.json, results/explainable_fashion_mnist.json)")
    p.add_argument("--write", action="store_true", help="update the sections of benchmarks/BENCHMARKS.md")
    p.add_argument("--chunk-steps", type=int, default=None,
                   help="train each unfinished run by at most N more steps per call, resuming exactly from its "
                   "checkpoint, and stop the call when a run is left unfinished (re-run the same command to continue)")
    p.add_argument("overrides", nargs="*", help="extra config overrides for every trained row (e.g. "
                   "model.backbone=resnet10_32 train.optimizer=lars train.device=cuda); part of the budget")
    args = p.parse_args(argv)
    if args.chunk_steps is not None and args.chunk_steps < 1:
        p.error(f"--chunk-steps: expected a positive number of steps, got {args.chunk_steps}")
    for key, value in DATASET_DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dataset == "fashion-mnist" and (args.num_train, args.num_test) != (60000, 10000):
        p.error("--num-train/--num-test: fashion-mnist uses its official 60,000 / 10,000 split")
    if args.dataset == "shapes" and args.eval_train is not None:
        p.error("--eval-train: fashion-mnist only (shapes evaluates on its whole --num-train)")
    if args.eval_train is not None and not 1 <= args.eval_train <= args.num_train:
        p.error(f"--eval-train: expected 1..{args.num_train}, got {args.eval_train}")
    if args.json is None:
        args.json = str(FASHION_JSON if args.dataset == "fashion-mnist" else DEFAULT_JSON)
    if args.out is None:  # restore_run trusts a checkpoint it finds there, so a folder must hold one budget's runs
        args.out = f"runs/bench_{Path(args.json).stem}"
    return args


def variant_overrides(variant: str) -> dict[str, Any]:
    """Config overrides of a trained variant (raises on an unknown name)."""
    if variant in ("byol", "byol_half"):
        return {"method.name": "byol"}
    if variant == "xbyol":
        return {"method.name": "xbyol"}
    if variant in ("byol_ft", "byol_ft_matched"):
        return {"method.name": "xbyol", "method.semantic.byol_weight": 0.0, "method.semantic.fusion": False}
    if variant in SUPERVISED:
        return {}  # trained by score_supervised, not by xbyol.train
    if variant == "xbyol_nofusion":
        return {"method.name": "xbyol", "method.semantic.fusion": False}
    if variant.startswith("xbyol_w"):
        return {"method.name": "xbyol", "method.semantic.weight": float(variant[len("xbyol_w"):])}
    raise ValueError(f"unknown variant {variant!r}")


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every entry of the results file must share."""
    out = {k: getattr(args, k) for k in ("steps", "batch_size", "num_train", "num_test", "image_size", "lr")}
    if args.dataset != "shapes":
        out["dataset"] = args.dataset
        out["eval_train"] = args.eval_train
    if args.overrides:
        out["overrides"] = list(args.overrides)
    return out


def config_for(args: argparse.Namespace, variant: str, seed: int):
    """The run config of a trained row. ``byol_ft`` starts from the seed's ``byol`` run (so it has twice the
    steps of the others); ``byol_half`` is BYOL for ``steps // 2`` and ``byol_ft_matched`` fine-tunes it for the
    other ``steps - steps // 2``, the same total steps and labelled draws' budget as xbyol."""
    cfg = _config_for(args, variant, seed)
    seed_dir = Path(args.out) / f"seed{seed}"
    if variant == "byol_ft":
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(seed_dir / "byol")))
    if variant == "byol_half":
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=args.steps // 2))
    if variant == "byol_ft_matched":
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=args.steps - args.steps // 2,
                                                                 init_from=str(seed_dir / "byol_half")))
    return cfg


def _config_for(args: argparse.Namespace, variant: str, seed: int):
    from xbyol.config import from_dict

    if args.dataset == "fashion-mnist":
        import yaml

        return from_dict(yaml.safe_load(FASHION_PRESET.read_text()), {
            "name": variant, "out_dir": str(Path(args.out) / f"seed{seed}"),
            "data.batch_size": args.batch_size, "data.image_size": args.image_size, "data.seed": seed,
            "train.steps": args.steps, "train.lr": args.lr, "train.seed": seed, "train.progress": False,
            "train.log_every": 50, "eval.baseline": False, **variant_overrides(variant),
        } | _extra(args))
    return from_dict({}, {
        "name": variant, "out_dir": str(Path(args.out) / f"seed{seed}"),
        "data.name": "shapes", "data.image_size": args.image_size, "data.num_train": args.num_train,
        "data.num_test": args.num_test, "data.batch_size": args.batch_size, "data.seed": seed,
        "aug.crop_scale_min": 0.3,
        "model.backbone": "resnet10_16", "model.proj_hidden": 512, "model.proj_dim": 128, "model.pred_hidden": 512,
        "method.tau_base": 0.99,
        "train.steps": args.steps, "train.optimizer": "adamw", "train.lr": args.lr, "train.weight_decay": 1e-4,
        "train.precision": "bf16", "train.channels_last": True, "method.concat_views": True, "train.seed": seed, "train.progress": False,
        "train.log_every": 10, "eval.baseline": False, **variant_overrides(variant),
    } | _extra(args))


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's ``key=value`` overrides, after every default of the benchmark."""
    from xbyol.config import parse_override

    return dict(parse_override(o) for o in args.overrides)


class Unfinished(Exception):
    """A run left unfinished by ``--chunk-steps``: the call saves what it has and stops."""


def train_chunk(args: argparse.Namespace, cfg: Any) -> Path:
    """Train ``cfg``'s run: from scratch (without ``--chunk-steps``), or by at most ``--chunk-steps`` more steps
    from its newest checkpoint (exact resume). Raises :class:`Unfinished` when the run has not reached its steps."""
    from xbyol.training import train
    from xbyol.training.checkpoint import CheckpointError, load_latest_checkpoint

    if args.chunk_steps is None:
        return Path(train(cfg, overwrite=True))
    run_dir = Path(cfg.out_dir) / cfg.name
    done = 0
    if (run_dir / "checkpoints").is_dir():
        try:
            done = int(load_latest_checkpoint(run_dir / "checkpoints")[1]["step"])
        except CheckpointError:
            done = 0
    total = int(cfg.train.steps)
    if done < total:
        stop = min(total, done + args.chunk_steps)
        train(cfg, resume=done > 0, overwrite=done == 0, stop_after=stop if stop < total else None)
        if stop < total:
            raise Unfinished(f"{run_dir}: step {stop} of {total}; run the same command again to continue")
    return run_dir


def train_variant(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    from xbyol.eval.concept_eval import concept_scores
    from xbyol.eval.evaluate import evaluate
    from xbyol.run import load_run

    t0 = time.perf_counter()
    cfg = config_for(args, variant, seed)
    seconds = Path(cfg.out_dir) / cfg.name / "bench_train_s.txt"  # training seconds of earlier chunks
    before = float(seconds.read_text()) if args.chunk_steps and seconds.is_file() else 0.0
    try:
        run_dir = train_chunk(args, cfg)
    finally:
        if args.chunk_steps:
            seconds.parent.mkdir(parents=True, exist_ok=True)
            seconds.write_text(str(before + time.perf_counter() - t0))
    train_s = before + time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.dataset != "shapes":  # no masks: one feature pass per split feeds every score
        run = load_run(run_dir)
        out = {"run_dir": str(run_dir), "train_s": train_s, **scores_without_masks(run, variant, args.eval_train)}
        out["eval_s"] = time.perf_counter() - t0
        return out
    res = evaluate(run_dir, progress=False, only=["concepts"])
    out = {"run_dir": str(run_dir), "train_s": train_s, "probe": res["trained"], "concepts": res.get("concepts")}
    if variant == "byol":
        run = load_run(run_dir)
        if out["concepts"] is None:  # class names as concepts: eval leaves the post-hoc map out
            out["concepts"] = concept_scores(run, class_concepts=True)
        out["concepts_backbone"] = concept_scores(run, use_projector=False, class_concepts=True)
    out["eval_s"] = time.perf_counter() - t0
    return out


def restore_run(args: argparse.Namespace, variant: str, seed: int, runs: dict[str, Any]) -> None:
    """Re-train the seed's run of ``variant`` when a new row or check needs it but its directory is gone
    (results keep scores, not run directories).

    Training is deterministic on the CPU for a given seed and thread count, so the re-made run should score
    what the stored entry says; if it does not, the stored entry is replaced (and said), so every row and check
    comes from the runs it was built on. ``byol_ft`` needs ``byol`` first, ``byol_ft_matched`` ``byol_half``.
    """
    if (Path(args.out) / f"seed{seed}" / variant / "checkpoints" / "last.pt").is_file():
        return
    parent = {"byol_ft": "byol", "byol_ft_matched": "byol_half"}.get(variant)
    if parent is not None:
        restore_run(args, parent, seed, runs)
    new = train_variant(args, variant, seed)
    old = runs.get(variant)
    same = old is not None and _get(new, "probe", "linear_probe") == _get(old, "probe", "linear_probe") and \
        _get(new, "concepts", "scs_margin") == _get(old, "concepts", "scs_margin")
    print(f"seed {seed}: re-made the {variant} run; its scores {'match' if same else 'DIFFER from'} the stored entry",
          flush=True)
    if not same:
        runs[variant] = new


def with_backbone(byol_run: Any, backbone: Any, args: argparse.Namespace, seed: int, variant: str) -> Any:
    """The seed's BYOL run (data, concept bank, config) with its encoder replaced by ``backbone``
    and no projector, so concept scores fit their post-hoc map on the backbone representation."""
    from xbyol.rundir import RunDir

    run = copy.copy(byol_run)
    run.method = types.SimpleNamespace(backbone=backbone)
    run.paths = RunDir(Path(args.out) / f"seed{seed}" / variant)  # run_dir is read from paths
    run.run_dir.mkdir(parents=True, exist_ok=True)
    return run


def random_init_run(args: argparse.Namespace, seed: int) -> Any:
    """The seed's BYOL run with its encoder replaced by a freshly initialised twin and no projector."""
    from xbyol.run import load_run

    byol = load_run(Path(args.out) / f"seed{seed}" / "byol")
    return with_backbone(byol, byol.random_init_backbone(seed=seed), args, seed, "random_init")


def score_random_init(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from xbyol.eval.concept_eval import concept_scores
    from xbyol.eval.evaluate import probe_and_knn

    t0 = time.perf_counter()
    run = random_init_run(args, seed)
    if args.dataset != "shapes":
        return {**scores_without_masks(run, "random_init", args.eval_train), "eval_s": time.perf_counter() - t0}
    probe, _ = probe_and_knn(run.backbone, run.dataset("train"), run.dataset("test"), run.cfg, run.device)
    concepts = concept_scores(run, use_projector=False, class_concepts=True)
    return {"probe": probe, "concepts": concepts, "eval_s": time.perf_counter() - t0}


def supervised_model(args: argparse.Namespace, seed: int, byol: Any, bank: Any) -> tuple[Any, float]:
    """The seed's supervised model (backbone + linear head over the concepts) and its training seconds.

    Multi-label concepts (shapes): binary cross-entropy per concept; single-label concepts (class names,
    Fashion-MNIST): softmax cross-entropy over them. Trained once per seed and kept in ``OUT/seedN/supervised``
    (the file names the loss), so ``supervised_ml`` and ``supervised_head`` read the same model.
    """
    import torch.nn.functional as F
    from quality import train_supervised

    from xbyol.concepts.vocabulary import ConceptLabeler

    labeler = ConceptLabeler(bank.texts, byol.dataset("train"))
    softmax = args.dataset != "shapes"  # class-name concepts: one true concept per image
    path = Path(args.out) / f"seed{seed}" / "supervised" / ("model_ce.pt" if softmax else "model_bce.pt")

    def loss(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        t = labeler(batch)  # (B, K) bool
        if softmax:
            return F.cross_entropy(logits, t.float().argmax(1))
        return F.binary_cross_entropy_with_logits(logits, t.float())

    cfg = config_for(args, "byol", seed)
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=False)
        return blob["model"].eval(), blob["train_s"]
    t0 = time.perf_counter()
    model = train_supervised(cfg, num_outputs=len(bank), loss_fn=loss, whole=True).eval()
    train_s = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_s": train_s}, path)
    return model, train_s


def score_supervised(args: argparse.Namespace, seed: int, variant: str) -> dict[str, Any]:
    """``supervised_ml``: the supervised backbone scored like random init's (post-hoc map on the backbone);
    ``supervised_head``: the same model read through its own head (its logits rank the concepts: concept
    accuracy; it has no concept-space vector, so no SCS)."""
    from xbyol.concepts.projection import run_bank
    from xbyol.eval.concept_eval import concept_scores
    from xbyol.eval.concept_scores import concept_accuracy
    from xbyol.eval.evaluate import probe_and_knn
    from xbyol.run import load_run

    byol = load_run(Path(args.out) / f"seed{seed}" / "byol")
    bank = run_bank(byol)
    model, train_s = supervised_model(args, seed, byol, bank)
    run = with_backbone(byol, model.backbone.eval(), args, seed, variant)
    t0 = time.perf_counter()
    if variant == "supervised_head":
        test = split_features(run.backbone, run, "test", bank)
        with torch.no_grad():
            logits = model.head(test.x.to(next(model.parameters()).device)).float().cpu()  # (N, K)
        groups = bank.groups or {"all": list(range(len(bank)))}
        concepts = {"map": "own head", "n_concepts": len(bank), "scs": None, "scs_nonmatch": None, "scs_margin": None,
                    "concept_accuracy": concept_accuracy(logits, test.t, groups)}
        if args.dataset != "shapes":
            concepts["per_image"] = per_image_scores(None, logits, test.t, groups)  # Fashion-MNIST: fixed test set
            train = split_features(run.backbone, run, "train", bank, args.eval_train)
            from xbyol.eval.evaluate import StageTimer, probe_and_knn_of_features
            probe, _ = probe_and_knn_of_features(train.x, train.y, test.x, test.y, run.cfg,
                                                 StageTimer(variant, verbose=False), "eval")
        else:
            probe, _ = probe_and_knn(run.backbone, run.dataset("train"), run.dataset("test"), run.cfg, run.device)
        return {"probe": probe, "concepts": concepts, "train_s": train_s, "eval_s": time.perf_counter() - t0}
    if args.dataset != "shapes":
        return {**scores_without_masks(run, variant, args.eval_train), "train_s": train_s,
                "eval_s": time.perf_counter() - t0}
    probe, _ = probe_and_knn(run.backbone, run.dataset("train"), run.dataset("test"), run.cfg, run.device)
    concepts = concept_scores(run, use_projector=False, class_concepts=True)
    return {"probe": probe, "concepts": concepts, "train_s": train_s, "eval_s": time.perf_counter() - t0}


def per_image_scores(reps: torch.Tensor | None, scores: torch.Tensor, targets: torch.Tensor,
                     groups: dict[str, list[int]], concepts: torch.Tensor | None = None) -> dict[str, Any]:
    """Per-test-image values for a paired test-set interval on a fixed test set (Fashion-MNIST): ``scs_margin``
    (list, 3 decimals, None where undefined; from the concept-space vectors ``reps [N, E]`` and the concept
    embeddings ``concepts [K, E]``, when given) and per group ``hit_<group>``, a string of ``1`` / ``0`` / ``-``
    (a hit, a miss, no true concept in the group) from ``scores [N, K]``."""
    from xbyol.eval.concept_scores import concept_accuracy_per_image, scs_per_image

    out: dict[str, Any] = {}
    if reps is not None and concepts is not None:
        match, nonmatch = scs_per_image(reps, concepts, targets)
        out["scs_margin"] = [None if m != m else round(m, 3) for m in (match - nonmatch).tolist()]
    for g, idx in groups.items():
        hit = concept_accuracy_per_image(scores, targets, idx)
        out[f"hit_{g}"] = "".join("-" if h != h else str(int(h)) for h in hit.tolist())
    return out


@dataclasses.dataclass
class SplitFeatures:
    """One pass over a split: features ``x [N, D]``, class labels ``y [N]``, concept positives ``t [N, K]`` bool."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor


def split_features(encode_fn: Callable[[torch.Tensor], torch.Tensor], run: Any, split: str, bank: Any,
                   limit: int | None = None) -> SplitFeatures:
    """Features of the un-augmented images of ``run``'s ``split`` (the first ``limit``; ``None``: all) by
    ``extract_features`` (the batches, preprocessing and eval mode of ``xbyol eval``'s probe and of the
    post-hoc map's fit), with their labels."""
    from xbyol.concepts.vocabulary import ConceptLabeler
    from xbyol.data.base import collate
    from xbyol.rundir import extract_features

    dataset = run.dataset(split)
    images = dataset if limit is None else torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    x, y = extract_features(encode_fn, images, device=run.device)  # (N, D), (N,)
    labeler = ConceptLabeler(bank.texts, dataset)
    loader = torch.utils.data.DataLoader(images, batch_size=256, shuffle=False, collate_fn=collate)
    t = torch.cat([labeler(batch).cpu() for batch in loader])  # (N, K)
    return SplitFeatures(x, y, t)


@torch.no_grad()
def map_scores(cmap: Any, test: SplitFeatures, bank: Any, kind: str) -> dict[str, Any]:
    """SCS and concept accuracy of a concept map ``[N, D] -> [N, E]`` on test features: the entries of
    ``concept_scores`` for data without masks (no SSCS)."""
    from xbyol.eval.concept_eval import scores_of_representations

    out: dict[str, Any] = {"map": kind, "n_concepts": len(bank)}
    reps = cmap.eval()(test.x).float()  # (N, E)
    out.update(scores_of_representations(reps, test.t, bank))
    groups = bank.groups or {"all": list(range(len(bank)))}
    cos = torch.nn.functional.normalize(reps, dim=-1) @ bank.embeddings.T  # (N, K)
    out["per_image"] = per_image_scores(reps, cos, test.t, groups, bank.embeddings)  # the test set is fixed
    return out


def posthoc_scores(train: SplitFeatures, test: SplitFeatures, bank: Any, projector: Any, cfg: Any) -> dict[str, Any]:
    """Fit the post-hoc concept map (``fit_concept_map``, the run's semantic settings, seed ``train.seed``) on
    the training features, optionally behind the frozen ``projector``, and score it on the test features."""
    from xbyol.concepts.projection import fit_concept_map

    s = cfg.method.semantic
    cmap = fit_concept_map(train.x, train.t, bank.embeddings, projector, s.loss, s.temperature, s.posthoc_steps,
                           s.posthoc_lr, cfg.train.seed)
    return map_scores(cmap, test, bank, "post-hoc")


def scores_without_masks(run: Any, variant: str, train_limit: int | None = None) -> dict[str, Any]:
    """Probe, kNN and concept scores of a run on data without masks (Fashion-MNIST), from one feature pass per
    split: the same numbers as ``xbyol eval`` plus ``concept_scores(class_concepts=True)``, which would encode
    each split up to three times. The learned map for runs that have one (xbyol, byol_ft), else post-hoc maps
    (byol: on the projector and on the backbone; the others: on the backbone). The probe, the kNN bank and the
    maps are fitted on the first ``train_limit`` training images (``None``: all), scored on the whole test
    split. ``stage_s`` times each part."""
    from xbyol.concepts.projection import concept_projection, run_bank
    from xbyol.eval.evaluate import StageTimer, probe_and_knn_of_features

    bank = run_bank(run)
    stage = StageTimer(variant, verbose=False)
    with stage("features"):
        train = split_features(run.backbone, run, "train", bank, train_limit)
        test = split_features(run.backbone, run, "test", bank)
    probe, _ = probe_and_knn_of_features(train.x, train.y, test.x, test.y, run.cfg, stage, "eval")
    out: dict[str, Any] = {"probe": probe}
    with stage("concept map"):
        if hasattr(run.method, "concept_head"):
            out["concepts"] = map_scores(concept_projection(run)[0], test, bank, "learned")
        elif variant == "byol":
            out["concepts"] = posthoc_scores(train, test, bank, run.method.projector, run.cfg)
        else:
            out["concepts"] = posthoc_scores(train, test, bank, None, run.cfg)
    if variant == "byol":
        with stage("concept map on the backbone"):
            out["concepts_backbone"] = posthoc_scores(train, test, bank, None, run.cfg)
    out["stage_s"] = stage.seconds
    return out


def score_raw_pixels(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """SCS and concept accuracy of a post-hoc map fitted on flattened preprocessed pixels: ``[N, 3HW]`` on shapes,
    ``[N, HW]`` on Fashion-MNIST, whose three channels are copies of one grey image (identical after the fit's
    per-feature standardisation; 2,352 inputs instead of 784 would triple the fit's cost for the same pixels)."""
    from xbyol.concepts.projection import run_bank
    from xbyol.run import load_run

    t0 = time.perf_counter()
    run = load_run(Path(args.out) / f"seed{seed}" / "byol")
    bank = run_bank(run)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return (x if args.dataset == "shapes" else x[:, :1]).flatten(1)  # (B, 3HW) or (B, HW)

    train = split_features(flat, run, "train", bank, args.eval_train)  # eval_train: None on shapes (all)
    test = split_features(flat, run, "test", bank)
    return {"concepts": posthoc_scores(train, test, bank, None, run.cfg), "eval_s": time.perf_counter() - t0}


def explain_scores(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    from xbyol.explain.evaluation import explain_eval
    from xbyol.run import load_run

    run = random_init_run(args, seed) if variant == "random_init" else load_run(Path(args.out) / f"seed{seed}" / variant)
    t0 = time.perf_counter()
    out = explain_eval(run, n_images=args.explain_images, progress=False, write=False)
    out["eval_s"] = time.perf_counter() - t0
    return out


def faithfulness_scores(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    from xbyol.explain.concept_faithfulness import explanation_faithfulness
    from xbyol.run import load_run

    run = random_init_run(args, seed) if variant == "random_init" else load_run(Path(args.out) / f"seed{seed}" / variant)
    return explanation_faithfulness(run, seed=seed)


def split_targets(dataset: Any, bank: Any, limit: int | None = None) -> torch.Tensor:
    """``[N, K]`` bool concept positives of the first ``limit`` images of ``dataset`` (``None``: all)."""
    from xbyol.concepts.vocabulary import ConceptLabeler
    from xbyol.data.base import collate

    images = dataset if limit is None else torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    labeler = ConceptLabeler(bank.texts, dataset)
    loader = torch.utils.data.DataLoader(images, batch_size=256, shuffle=False, collate_fn=collate)
    return torch.cat([labeler(batch).cpu() for batch in loader])


def null_scores(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """SCS and concept accuracy of the reference representations of :mod:`xbyol.eval.concept_nulls` on the
    seed's test split (chance: generator seeded with ``seed``; label prior: the training split's frequencies,
    the first ``--eval-train`` images on Fashion-MNIST, as the post-hoc maps)."""
    from xbyol.concepts.build import bank_for
    from xbyol.data import build_dataset
    from xbyol.eval.concept_eval import scores_of_representations
    from xbyol.eval.concept_nulls import chance_representations, label_prior_representation, oracle_representations

    cfg = config_for(args, "byol", seed)  # the seed's data and concept bank; no run needed
    train_data = build_dataset(cfg, "train")
    bank = bank_for(cfg.method.semantic, train_data)
    test_t = split_targets(build_dataset(cfg, "test"), bank)
    train_t = split_targets(train_data, bank, args.eval_train)
    emb = bank.embeddings.float()  # (K, E)
    reps = {"chance": chance_representations(len(test_t), emb.shape[1], torch.Generator().manual_seed(seed)),
            "label_prior": label_prior_representation(train_t, emb)[None].expand(len(test_t), -1),
            "oracle": oracle_representations(test_t, emb)}
    return {name: scores_of_representations(r, test_t, bank) for name, r in reps.items()}


def rank_faithfulness_scores(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    """:func:`xbyol.explain.rank_faithfulness.rank_faithfulness` of one row's concept "why".

    Each row's weights on its representation ``h [N, D]``: xbyol's concept attention
    (``concept_weights_of``); the learned map of byol_ft rows and a post-hoc map (fitted here on the training
    split, as the table's) otherwise, as cosines to the concept embeddings (the ranks of ``softmax(cos / T)``);
    supervised_head: its logits. Directions: ``concept_directions`` of the training representations and
    labels, removed about their mean (the first ``--eval-train`` training images on Fashion-MNIST).
    """
    import torch.nn.functional as F

    from xbyol.concepts.explain_embedding import concept_weights_of
    from xbyol.concepts.projection import fit_concept_map, run_bank
    from xbyol.explain.concept_faithfulness import concept_directions
    from xbyol.explain.rank_faithfulness import rank_faithfulness
    from xbyol.run import load_run

    seed_dir = Path(args.out) / f"seed{seed}"
    byol = load_run(seed_dir / "byol")
    bank = run_bank(byol)
    emb = bank.embeddings.float()  # (K, E)
    encode: Callable[[torch.Tensor], torch.Tensor]
    score_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    projector = None
    if variant == "raw_pixels":
        encode = lambda x: (x if args.dataset == "shapes" else x[:, :1]).flatten(1)  # noqa: E731  (B, 3HW) / (B, HW)
        run = byol
    elif variant == "random_init":
        run = random_init_run(args, seed)
        encode = run.backbone
    elif variant in SUPERVISED:
        model, _ = supervised_model(args, seed, byol, bank)
        run = with_backbone(byol, model.backbone.eval(), args, seed, variant)
        encode = run.backbone
        if variant == "supervised_head":
            head = copy.deepcopy(model.head).cpu()
            score_fn = lambda h: head(h).float()  # noqa: E731  (N, K) logits
    else:
        run = load_run(seed_dir / variant)
        encode = run.backbone
        if variant == "byol":
            projector = run.method.projector
        else:  # xbyol, byol_ft, byol_ft_matched: their learned map (attention where there is fusion)
            score_fn = lambda h: concept_weights_of(run, h)  # noqa: E731
    train = split_features(encode, run, "train", bank, args.eval_train)
    test = split_features(encode, run, "test", bank)
    if score_fn is None:
        s = run.cfg.method.semantic
        cmap = fit_concept_map(train.x, train.t, emb, projector, s.loss, s.temperature, s.posthoc_steps, s.posthoc_lr,
                               run.cfg.train.seed).eval()
        cmap = copy.deepcopy(cmap).cpu()  # the removals run on the CPU
        score_fn = lambda h: F.normalize(cmap(h).float(), dim=-1) @ emb.T  # noqa: E731  (N, K)
    train_x = train.x.float().cpu()
    directions = concept_directions(train_x, train.t.cpu())
    keep = ~torch.isnan(directions).any(1)
    if not bool(keep.all()):
        raise SystemExit(f"seed {seed} {variant}: concepts without a direction (every or no training image has "
                         f"them): {[bank.texts[i] for i in torch.nonzero(~keep).flatten().tolist()]}")
    with torch.no_grad():
        out = rank_faithfulness(score_fn, test.x.float().cpu(), directions, train_x.mean(0), seed)
    if args.dataset == "shapes":  # each seed has its own test images: the seeds carry the test-set noise
        out.pop("excess_per_image")
    return out


# ----------------------------------------------------------------------------- results file


def load_results(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    return read_results(path, budget(args), {"runs": {}, "explain": {}, "faithfulness": {}, "nulls": {},
                                             "faithfulness_rank": {}})


def save_results(path: Path, data: dict[str, Any]) -> None:
    write_results(path, data)


# ----------------------------------------------------------------------------- tables


def _get(entry: dict[str, Any] | None, *keys: str) -> float | None:
    cur: Any = entry
    for k in keys:
        if not isinstance(cur, dict) or k not in cur or cur[k] is None:
            return None
        cur = cur[k]
    return float(cur)


def columns(data: dict[str, Any], variants: list[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(label, [per-seed entry])`` per column; BYOL gives two (projector and backbone maps)."""
    seeds = sorted(data["runs"], key=lambda s: int(s.removeprefix("seed")))
    cols = []
    for v in variants:
        entries = [data["runs"][s][v] for s in seeds if v in data["runs"][s]]
        if not entries:
            continue
        cols.append((LABELS.get(v, v.replace("xbyol_w", "xbyol, semantic weight ")), entries))
        if v == "byol":
            backbone = [dict(e, concepts=e["concepts_backbone"]) for e in entries]
            cols.append((LABELS["byol_backbone"], backbone))
    return cols


def table(data: dict[str, Any], variants: list[str], dataset: str = "shapes") -> str:
    cols = columns(data, variants)
    groups = GROUPS[dataset]
    rows: list[tuple[str, ...]] = [("metric", *[c for c, _ in cols], "chance", "label prior", "ceiling")]
    nulls = data.get("nulls") or {}

    def null_level(name: str, get: Callable[[dict[str, Any]], float | None]) -> str:
        """Mean over the seeds of a reference representation's score (``-`` without --nulls)."""
        vals = [get({"concepts": n[name]}) for n in nulls.values() if name in n]
        vals = [v for v in vals if v is not None]
        return f"{sum(vals) / len(vals):.3f}" if vals else ""
    ref = next((e for _, es in cols for e in es if (e.get("concepts") or {}).get("sscs_chance")), None)
    ref = ref or next((e for _, es in cols for e in es if (e.get("concepts") or {}).get("concept_accuracy")), None)

    def add(name: str, get: Callable[[dict[str, Any]], float | None], chance: str = "", ceiling: str = "",
            with_nulls: bool = False) -> None:
        prior = ""
        if with_nulls and nulls:  # the reference representations replace the uniform-guess level
            chance, prior, ceiling = (null_level(n, get) for n in ("chance", "label_prior", "oracle"))
        rows.append((name, *[mean_sd([get(e) for e in es]) for _, es in cols], chance, prior, ceiling))

    def ref_level(key: str) -> str:
        v = _get(ref, "concepts", key, "mean") if ref else None
        return "-" if v is None else f"{v:.3f}"

    add("SCS match (mean cos to true concepts)", lambda e: _get(e, "concepts", "scs"), with_nulls=True)
    add("SCS non-match (mean cos to others)", lambda e: _get(e, "concepts", "scs_nonmatch"), with_nulls=True)
    add("**SCS margin**", lambda e: _get(e, "concepts", "scs_margin"), with_nulls=True)
    chance_acc = {g: _get(ref, "concepts", "concept_accuracy", f"{g}_chance") for g in groups} if ref else {}
    for g in groups:
        c = chance_acc.get(g)
        add(f"concept accuracy: {g}", lambda e, g=g: _get(e, "concepts", "concept_accuracy", g),
            "" if c is None else f"{c:.3f}", with_nulls=True)
    if len(groups) > 1:
        add("**concept accuracy, mean of groups**", lambda e: _mean_groups(e, groups), with_nulls=True)
    probe_label, probe_chance = PROBE_LABEL[dataset]
    if dataset != "shapes":  # no masks, so no SSCS
        add(f"**linear probe accuracy** (label = {probe_label})", lambda e: _get(e, "probe", "linear_probe"), probe_chance)
        add("kNN accuracy", lambda e: _get(e, "probe", "knn"))
        rows.append(("training time, s", *[mean_sd([e.get("train_s") for e in es], 0) for _, es in cols], "", "", ""))
        return _markdown(rows)
    add("**SSCS mIoU (background rule), mean of groups**", lambda e: _get(e, "concepts", "sscs", "mean"),
        ref_level("sscs_chance"), ref_level("sscs_ceiling"))
    add("SSCS mIoU, concepts only (background excluded)", lambda e: _get(e, "concepts", "sscs_concepts", "mean"),
        ref_level("sscs_concepts_chance"), ref_level("sscs_concepts_ceiling"))
    add("SSCS mIoU with ground-truth foreground, concepts only", lambda e: _get(e, "concepts", "sscs_gt_foreground_concepts", "mean"),
        ref_level("sscs_gt_foreground_concepts_chance"), ref_level("sscs_gt_foreground_concepts_ceiling"))
    add("SSCS mIoU with ground-truth foreground (background IoU = 1 included)", lambda e: _get(e, "concepts", "sscs_gt_foreground", "mean"),
        ref_level("sscs_gt_foreground_chance"), ref_level("sscs_gt_foreground_ceiling"))
    add(f"**linear probe accuracy** (label = {probe_label})", lambda e: _get(e, "probe", "linear_probe"), probe_chance)
    add("kNN accuracy", lambda e: _get(e, "probe", "knn"))
    rows.append(("training time, s", *[mean_sd([e.get("train_s") for e in es], 0) for _, es in cols], "", "", ""))
    return _markdown(rows)


RANK_MEASURES = [("gap", "rank gap: rank of the top concept after removing its own direction minus after a random one's"),
                 ("gap_null", "the same, concept names permuted (null)"),
                 ("excess", "**excess over the null** (gap - null gap)")]


def rank_faithfulness_table(data: dict[str, Any]) -> str:
    fr = data.get("faithfulness_rank") or {}
    seeds = sorted(fr, key=lambda s: int(s.removeprefix("seed")))
    models = [m for m in RANK_ROWS if any(m in fr[s] for s in seeds)]
    if not models:
        return ""
    rows: list[tuple[str, ...]] = [("measure", *[LABELS[m] for m in models])]
    for key, name in RANK_MEASURES:
        rows.append((name, *[mean_sd([_get(fr[s].get(m), key) for s in seeds]) for m in models]))
    return _markdown(rows)


def _mean_groups(e: dict[str, Any], groups: tuple[str, ...]) -> float | None:
    vals = [_get(e, "concepts", "concept_accuracy", g) for g in groups]
    return None if any(v is None for v in vals) else sum(vals) / len(vals)  # type: ignore[arg-type]


def _markdown(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


EXPLAIN_COLS = [("pointing_game", "PG (per concept)"), ("pointing_game_pairs", "PG (per pair)"),
                ("blank_maps", "blank maps"), ("energy_pointing_game", "energy PG"), ("iou", "top-20% IoU"),
                ("deletion_auc", "deletion AUC ↓"), ("insertion_auc", "insertion AUC ↑"),
                ("max_sensitivity", "max-sensitivity ↓"), ("randomization_corr", "randomisation corr ↓"),
                ("randomization_undefined", "randomisation undefined")]
COUNT_COLS = ("blank_maps", "randomization_undefined")


FAITH_ROWS = [("score_drop_top", "weight of the top concept: drop when its direction is removed"),
              ("score_drop_random", "weight of the top concept: drop when a random concept's direction is removed"),
              ("score_top_wins", "images where removing the top concept lowers it more"),
              ("ap", "retrieval AP of images with the concept (ranked by its weight), before"),
              ("ap_drop_top", "AP drop when the concept's direction is removed"),
              ("ap_drop_random", "AP drop when a random concept's direction is removed"),
              ("ap_top_wins", "concepts where removing their own direction lowers AP more")]


def faithfulness_table(data: dict[str, Any]) -> str:
    fa = data.get("faithfulness") or {}
    seeds = sorted(fa, key=lambda s: int(s.removeprefix("seed")))
    models = [("byol", LABELS["byol"]), ("xbyol", LABELS["xbyol"]), ("random_init", LABELS["random_init"])]
    models = [(m, label) for m, label in models if any(m in fa[s] for s in seeds)]
    if not models:
        return ""
    rows: list[tuple[str, ...]] = [("measure", *[label for _, label in models])]
    for key, name in FAITH_ROWS:
        rows.append((name, *[mean_sd([_get(fa[s].get(m), key) for s in seeds]) for m, _ in models]))
    return _markdown(rows)


def explain_entries(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{seed: {model: entry}}`` of the explain-eval entries to tabulate, seeds in order: the current ones
    (:func:`explain_current`) once any exists, so a table never averages two LIME / KernelSHAP defaults;
    before that, the stored ones as they are (they ran at the earlier default, which the section says)."""
    stored = {s: dict(data.get("explain", {})[s]) for s in sorted(data.get("explain", {}),
                                                                  key=lambda s: int(s.removeprefix("seed")))}
    if any(explain_current(e) for models in stored.values() for e in models.values()):
        stored = {s: {m: e for m, e in models.items() if explain_current(e)} for s, models in stored.items()}
    return {s: models for s, models in stored.items() if models}


def explain_table(data: dict[str, Any], model: str) -> str:
    chosen = explain_entries(data)
    entries = [models[model] for models in chosen.values() if model in models]
    if not entries:
        return ""
    methods = list(entries[0]["methods"])
    rows: list[tuple[str, ...]] = [("explainer", *[h for _, h in EXPLAIN_COLS])]
    for m in methods:
        rows.append((m, *[mean_sd([_get(e, "methods", m, k) for e in entries], 1 if k in COUNT_COLS else 3)
                          for k, _ in EXPLAIN_COLS]))
    centre = [_get(e, "protocol", "centre_baseline_pointing_game") for e in entries]
    centre_pairs = [_get(e, "protocol", "centre_baseline_pointing_game_pairs") for e in entries]
    rows.append(("centre baseline", mean_sd(centre), mean_sd(centre_pairs), *[""] * (len(EXPLAIN_COLS) - 2)))
    return _markdown(rows)


def explain_section(args: argparse.Namespace, data: dict[str, Any], command: str) -> str:
    chosen = explain_entries(data)
    seeds = list(chosen)
    if not seeds:
        return ""
    proto = next(iter(chosen[seeds[0]].values()))["protocol"]
    samples = (f"{proto['surrogate_samples']} times" if "surrogate_samples" in proto
               else "50 (LIME) and 2M (KernelSHAP) times, their defaults before they were raised,")
    parts = [EXPLAIN_SECTION, "",
             f"Command: `{command}`; results: `benchmarks/results/{Path(args.json).name}` (key `explain`).", "",
             f"The encoders of the section above (seeds {', '.join(s.removeprefix('seed') for s in seeds)}; "
             "mean ± sd over seeds), graded by `xbyol explain-eval`: "
             f"{proto['pairs']} (image, concept) pairs from the first {proto['images']} test images, target "
             "`concept:<the concept>` through the run's concept map (learned for xbyol, post-hoc otherwise), scored "
             "against that concept's mask. Pointing game: one point per map (the arg-max; tied maxima resolve to "
             "the tied pixel nearest their centre of mass), tolerance 15 px x 32/224 = 2.1 px, a constant or "
             "non-finite map is left out and counted as blank; 'per concept' is the mean over concepts of each "
             "concept's hit rate (the EBP protocol), 'per pair' the plain mean. Max-sensitivity and the model "
             f"randomisation check use the first {proto['robust_pairs']} pairs; the randomisation score is the "
             "Spearman correlation between the map before and after re-initialising every layer top-down (lower is "
             "better; Adebayo et al. 2018); a pair whose fully randomised map is constant (e.g. an all-zero Grad-CAM "
             "after its ReLU) has no correlation, is left out and counted in 'randomisation undefined' (the "
             "score is '-' when every pair is). Counts are per seed. LIME and KernelSHAP perturb "
             f"each image {samples} for M superpixels.", ""]
    for model, label in (("byol", "BYOL (post-hoc map on the projector)"), ("xbyol", "xbyol (learned map)"),
                         ("random_init", "random init (post-hoc map on the backbone)")):
        t = explain_table(data, model)
        if t:
            parts += [f"### {label}", "", t, ""]
    return "\n".join(parts)


def label_matched(data: dict[str, Any]) -> bool:
    """Fashion-MNIST results whose maps, probe and kNN bank are fitted on all 60,000 training images, the
    images xbyol draws its labelled batches from (``--eval-train 60000``); they get their own section."""
    return data["budget"].get("eval_train") == 60000


def fashion_heading(data: dict[str, Any]) -> str:
    return FASHION_MATCHED_SECTION if label_matched(data) else FASHION_SECTION


FASHION_ROWS_TEXT = (
    "The fine-tuned row starts from the seed's BYOL run, so it has had twice the steps of the others; the supervised "
    "row trains the backbone with a linear head and binary cross-entropy on the concept labels, then gets the same "
    "post-hoc map as random init (a later run uses softmax cross-entropy, as each image has one concept, and adds the "
    "model read through its own head). ")
FASHION_MATCHED_ROWS_TEXT = (
    "`byol_ft` starts from the seed's BYOL run and trains the semantic loss alone for as many steps again (twice "
    "xbyol's steps); `byol_ft_matched` is BYOL for half the steps, then the semantic loss alone for the other half "
    "(xbyol's total steps). The supervised model (backbone + linear head, softmax cross-entropy over the ten class "
    "concepts, as each image has one; the same steps, batch and schedule) is read twice: through a post-hoc map on "
    "its backbone (`supervised_ml`) and through its own head (`supervised_head`, its logits rank the concepts). ")


def fashion_fit_text(budget: dict[str, Any]) -> str:
    """Which training images fit the probe, kNN bank and post-hoc maps of a Fashion-MNIST table."""
    if budget.get("eval_train") is None:  # results from before --eval-train
        return "Fits on the whole 60,000-image training split, scores on the 10,000-image test split. "
    if budget["eval_train"] == 60000:
        return ("**Label-matched:** the probe, the kNN bank and every post-hoc map are fitted on the whole 60,000-image "
                "training split, the images xbyol draws its labelled batches from; every score is on the 10,000-image "
                "test split. ")
    return (f"**Evaluation subset:** the probe, the kNN bank and every post-hoc map are fitted on the first "
            f"{budget['eval_train']:,} of the 60,000 training images (the same images for every row and seed), and "
            "every score is on the whole 10,000-image test split; so the probe and kNN are a little below what the "
            "full split gives. On the full split each 300-step post-hoc fit alone took 10-13 minutes (128 features) "
            "and 21 minutes (784 raw pixels; 49 at 2,352) on one thread of the shared cores (extrapolated from 30 and "
            "10 profiled steps). ")


def fashion_section(args: argparse.Namespace, data: dict[str, Any], command: str) -> str:
    seeds = sorted(int(s.removeprefix("seed")) for s in data["runs"])
    b = data["budget"]
    return "\n".join([
        fashion_heading(data), "",
        f"Command: `{command}`; results: `benchmarks/results/{Path(args.json).name}` (key `runs`).", "",
        f"Budget: the preset `configs/fashion_mnist_byol.yaml` (resnet10_16, 28 px, AdamW lr {b['lr']:g}, bf16) at "
        f"{b['steps']} steps x {b['batch_size']} (~{b['steps'] * b['batch_size'] / b['num_train']:.1f} epochs of the "
        f"60,000 training images) for every trained row, {args.threads} CPU thread(s), shared machine. Seeds "
        f"{', '.join(map(str, seeds))} (`train.seed` = `data.seed`); every cell is the mean ± sd over those seeds. "
        "Concepts: the ten class names (all-MiniLM-L6-v2 embeddings), so each image has exactly one true concept and "
        "concept accuracy is a 10-way classification through the concept map. xbyol adds the semantic loss "
        "(contrastive, lambda 1, T 0.1) and concept attention. "
        + (FASHION_MATCHED_ROWS_TEXT if label_matched(data) else FASHION_ROWS_TEXT) + NULLS_TEXT + " **Label use:** xbyol trains with the class labels, so "
        "its probe and concept scores are not self-supervised results; every post-hoc map uses the same labels after "
        "training (a linear map fitted with the same semantic loss on standardised features: 300 full-batch Adam steps, "
        "lr 0.01; `xbyol.concepts.projection`). Each model encodes the images once, without augmentation, in fp32; that "
        "one pass feeds the linear probe and kNN (the settings of `xbyol eval` and of the representation-quality "
        "table: standardised multinomial logistic regression, C 1, lbfgs up to 1,000 iterations; weighted cosine kNN, "
        "k 20, T 0.07) and every concept map. "
        + fashion_fit_text(b)
        + "Raw pixels: the post-hoc map on the 784 "
        "preprocessed grey values (the encoders see them copied into three channels, which the fit's standardisation "
        "makes identical); their probe and kNN are in the representation-quality section, not re-measured here. **SSCS is not applicable:** Fashion-MNIST has no "
        "segmentation masks.", "",
        table(data, args.variants, args.dataset), "",
    ] + rank_section(data))


NULLS_TEXT = ("SCS and concept accuracy (with `--nulls`, mean over the seeds' test sets; `xbyol.eval.concept_nulls`, "
              "docs/FORMULAS.md): chance = a random representation (i.i.d. normal vectors), label prior = one constant "
              "vector for every image (the training-frequency-weighted sum of the concept embeddings), ceiling = the "
              "per-image optimum of the SCS margin (mean of the true concepts' embeddings minus the others'; its "
              "accuracy is that vector's, not an upper bound). A constant vector near the embeddings' common "
              "direction gets a high SCS match, which is why the margin, not the match, is the score.")


def section(args: argparse.Namespace, data: dict[str, Any], command: str) -> str:
    import platform

    if args.dataset == "fashion-mnist":
        return fashion_section(args, data, command)

    seeds = sorted(int(s.removeprefix("seed")) for s in data["runs"])
    b = data["budget"]
    budget_text = (f"shapes {b['image_size']} px, {b['num_train']} train / {b['num_test']} test images, resnet10_16, "
                   f"proj 512->128, pred 512, AdamW lr {b['lr']:g}, wd 1e-4, batch {b['batch_size']}, {b['steps']} steps "
                   f"(~{b['steps'] * b['batch_size'] / b['num_train']:.1f} epochs) for every trained row, tau_base 0.99, "
                   f"bf16 autocast, {args.threads} CPU thread(s) ({platform.processor() or platform.machine()}, shared machine)")
    return "\n".join([
        SECTION, "",
        f"Command: `{command}`; results: `benchmarks/results/{Path(args.json).name}` (key `runs`).", "",
        f"Budget: {budget_text}. Seeds {', '.join(map(str, seeds))} (`train.seed` = `data.seed`); every cell is the "
        "mean ± sd over those seeds. xbyol adds the semantic loss (contrastive, lambda 1, T 0.1, all-MiniLM-L6-v2 "
        "embeddings of the 24 concept names, no prompt) on the un-augmented images and concept attention. "
        "**Label use:** xbyol sees the concept labels during training, and the linear-probe label (shape of the "
        "largest object) is among them, so its probe accuracy is not a self-supervised result; every post-hoc "
        "map also uses the same labels, after training.", "",
        "Concept scores on the test split. Post-hoc maps: a linear map fitted after training on the same training "
        "labels with the same semantic loss (300 full-batch Adam steps, lr 0.01; `xbyol.concepts.projection`), every "
        "input feature standardised with the training statistics during the fit (the same for every post-hoc row), on "
        "the projector output (the same architecture as xbyol's map) or the backbone "
        "representation. SSCS background rule: a pixel is background when its best in-group score is below "
        "min + 0.5 (max - min) of that image. Chance: uniform random score maps at the 4x4 feature-map "
        "resolution, same pipeline; ceiling: the ground-truth masks area-pooled to 4x4, same pipeline. Raw pixels "
        "have no spatial concept map, so no SSCS. "
        + NULLS_TEXT, "",
        table(data, args.variants, args.dataset), "",
    ] + ([
        "### Faithfulness of the concept \"why\" (`explain_embedding`)", "",
        "For each test image, its top concept by the weights `explain_embedding` shows (attention for xbyol, "
        "softmax(cos / T) through the post-hoc map otherwise). The concept's direction in the backbone "
        "representation is the difference of the mean training representations with and without the concept "
        "(independent of the map that made the explanation); removing it is `h - ((h - mean) . u) u`. The control "
        "removes the direction of a random other concept. Retrieval: test images ranked by the concept's weight, "
        "average precision against 'has the concept', for every concept that is some image's top concept "
        "(`xbyol.explain.concept_faithfulness`).", "",
        faithfulness_table(data), "",
    ] if faithfulness_table(data) else []) + rank_section(data))


def rank_section(data: dict[str, Any]) -> list[str]:
    """The rank-scale faithfulness subsection (``--rank-faithfulness``), or nothing."""
    t = rank_faithfulness_table(data)
    if not t:
        return []
    return ["### Faithfulness against a null (`xbyol.explain.rank_faithfulness`)", "",
            "For each test image, its top concept by the row's weights (xbyol: concept attention; byol_ft rows: their "
            "learned map; supervised, own head: its logits; every other row: a post-hoc map fitted here on the "
            "training split). Removing a concept direction (as above) moves the top concept down the ranking of all "
            "concepts; the rank gap is its rank after removing its own direction minus its rank after removing a "
            "random other concept's (positive: the explanation depends on the concept it names). The null is the "
            "same weights with the concept names permuted by a fixed random derangement: it cannot be faithful, so "
            "its gap is about 0. A row passes when its excess over the null is above 0 by the paired rule.", "",
            t, ""]


EXPLAINED = ("byol", "xbyol", "random_init")  # the encoders --faithfulness and --explain-eval grade


def explain_current(entry: dict[str, Any] | None) -> bool:
    """Whether a stored explain-eval entry ran at today's LIME / KernelSHAP sample default (entries made before
    the protocol recorded it ran at the old one): a stale entry is re-made, never averaged with current ones."""
    from xbyol.explain.attribution import surrogate_samples_rule

    return entry is not None and entry.get("protocol", {}).get("surrogate_samples") == surrogate_samples_rule()


def rank_todo(args: argparse.Namespace, data: dict[str, Any], seed: int) -> list[str]:
    """The rows of ``seed`` whose rank-faithfulness check this call must still run, in :data:`RANK_ROWS` order."""
    if not args.rank_faithfulness:
        return []
    done = data.get("faithfulness_rank", {}).get(f"seed{seed}", {})
    return [v for v in RANK_ROWS if v in args.variants and v not in done]


def runs_needed(args: argparse.Namespace, data: dict[str, Any], seed: int) -> set[str]:
    """The trained rows of ``seed`` whose run directories this call reads although their scores are stored:
    a new row that starts from them, a check not yet in ``data`` (rank faithfulness of every row; faithfulness
    and explain-eval of :data:`EXPLAINED`, random init being BYOL's run with a fresh encoder). Each is re-made
    by :func:`restore_run` when its directory is gone."""
    key = f"seed{seed}"
    runs = data["runs"].get(key, {})
    ranks = set(rank_todo(args, data, seed))
    graded = {check for check, on in (("faithfulness", args.faithfulness), ("explain", args.explain_eval)) if on}
    stored = {check: data.get(check, {}).get(key, {}) for check in graded}
    graded_todo = {v for check in graded for v in EXPLAINED
                   if v not in stored[check] or (check == "explain" and not explain_current(stored[check][v]))}
    needed = {v for v in ranks | graded_todo if v not in UNTRAINED and v not in SUPERVISED}
    if ranks or "random_init" in graded_todo or any(w not in runs for w in NEEDS_BYOL if w in args.variants):
        needed.add("byol")  # the untrained and supervised rows read its data, bank and config
    if "byol_ft_matched" in ranks or ("byol_ft_matched" in args.variants and "byol_ft_matched" not in runs):
        needed.add("byol_half")  # byol_ft_matched's starting point
    return needed


def run_all(args: argparse.Namespace, data: dict[str, Any], path: Path) -> None:
    """Score every (seed, variant) not yet in ``data``, saving ``path`` after each entry."""
    order = [v for v in args.variants if v not in UNTRAINED]
    if (any(v in NEEDS_BYOL for v in args.variants) or args.rank_faithfulness) and "byol" not in order:
        order.insert(0, "byol")  # the untrained rows reuse the BYOL run's data and bank
    if "byol_ft_matched" in order and "byol_half" not in order:
        order.insert(order.index("byol_ft_matched"), "byol_half")  # its starting point
    order = sorted(order, key=lambda v: v != "byol") + [v for v in args.variants if v in UNTRAINED]
    for seed in args.seeds:
        runs = data["runs"].setdefault(f"seed{seed}", {})
        rank = data.setdefault("faithfulness_rank", {}).setdefault(f"seed{seed}", {})
        ranks = rank_todo(args, data, seed)
        needed = runs_needed(args, data, seed)
        for v in order:
            if v in runs:
                if v in needed:
                    restore_run(args, v, seed, runs)
                continue
            t0 = time.perf_counter()
            if v == "random_init":
                runs[v] = score_random_init(args, seed)
            elif v == "raw_pixels":
                runs[v] = score_raw_pixels(args, seed)
            elif v in SUPERVISED:
                runs[v] = score_supervised(args, seed, v)
            else:
                runs[v] = train_variant(args, v, seed)
            save_results(path, data)
            print(f"seed {seed} {v}: {time.perf_counter() - t0:.0f}s", flush=True)
        if args.nulls and f"seed{seed}" not in data.setdefault("nulls", {}):
            data["nulls"][f"seed{seed}"] = null_scores(args, seed)
            save_results(path, data)
        for v in ranks:
            t0 = time.perf_counter()
            rank[v] = rank_faithfulness_scores(args, v, seed)
            save_results(path, data)
            print(f"seed {seed} rank faithfulness {v}: {time.perf_counter() - t0:.0f}s", flush=True)
        if args.faithfulness:
            fa = data.setdefault("faithfulness", {}).setdefault(f"seed{seed}", {})
            for v in EXPLAINED:
                if v not in fa:
                    fa[v] = faithfulness_scores(args, v, seed)
                    save_results(path, data)
        if args.explain_eval:
            ex = data["explain"].setdefault(f"seed{seed}", {})
            for v in EXPLAINED:
                if explain_current(ex.get(v)):
                    continue
                ex[v] = explain_scores(args, v, seed)
                save_results(path, data)
                print(f"seed {seed} explain-eval {v}: {ex[v]['eval_s']:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for v in args.variants:
        if v not in UNTRAINED:
            variant_overrides(v)  # fail before any training on an unknown name
    torch.set_num_threads(args.threads)
    command = "python benchmarks/explainable.py " + " ".join(sys.argv[1:] if argv is None else argv)
    path = Path(args.json)
    data = load_results(path, args)
    # --threads bounds numpy's BLAS and OpenMP pools too, not only torch's: with OpenBLAS's default 2 threads on the
    # shared 2 cores the probe's lbfgs took 205 s and 285 s on 20,000 features, 17 s with one (the same fit)
    with threadpool_limits(limits=args.threads):
        try:
            run_all(args, data, path)
        except Unfinished as e:  # --chunk-steps: every finished entry is in the JSON already
            print(f"stopped: {e}", flush=True)
            return 0
    text = section(args, data, command.strip())
    print(text)
    ex_text = explain_section(args, data, command.strip()) if args.explain_eval else ""
    if ex_text:
        print(ex_text)
    if args.write:
        md = Path(__file__).resolve().parent / "BENCHMARKS.md"
        write_section(md, fashion_heading(data) if args.dataset == "fashion-mnist" else SECTION, text, keep="### Reading")
        if ex_text:
            write_section(md, EXPLAIN_SECTION, ex_text, keep="### Reading")
    return 0


if __name__ == "__main__":
    sys.exit(main())
