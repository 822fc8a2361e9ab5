"""Explainers against references that could show them wrong (issue 30), on small BYOL runs on ``shapes``.

Subcommands (each writes its part of one results file, ``--json``, default
``benchmarks/results/explainer_references.json``; every CPU-heavy one belongs under
``flock /work/locks/cpu``):

    python benchmarks/explainer_references.py train --seed 0        # the three variants of one training seed
    python benchmarks/explainer_references.py instability           # location instability + probe of every run
    python benchmarks/explainer_references.py shapley               # KernelSHAP / LIME vs exact Shapley values
    python benchmarks/explainer_references.py actmax                # activation maximisation vs the test split
    python benchmarks/explainer_references.py tables                # print the markdown tables from the JSON

The networks: a 3-stage ResNet (``resnet8_16``: stages 16/32/64 wide, CIFAR stem) on 32 px
``shapes``, whose last stage gives 8x8 maps, with one more 3x3 conv layer (64 filters) on top:

- ``plain``: that layer is an ordinary conv + ReLU, trained by BYOL alone ("the same layer
  trained normally");
- ``interpretable``: that layer is :class:`xbyol.models.interpretable.InterpretableConv`
  (Zhang et al. 2018: template mask + filter loss, weight 0.1, the paper's tau = 0.5/(h*w));
- ``interpretable_tau0.5``: the same with tau = 0.5 (the paper's tau leaves the filter loss
  flat, BENCHMARKS "Network dissection").

Each variant is trained with the ``shapes_byol`` preset (AdamW, bf16) for ``--steps`` steps
of batch ``--batch-size`` on ``--num-train`` images, per training seed (``train.seed``; the
data stay seed 0). The two backbones are registered by this script (they are benchmark
architectures, not library presets), so its run directories load only through it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import scipy.stats
import torch
from bench_seeds import read_results, seed_summary, write_results
from torch import nn

import xbyol
from xbyol.augment import normalize, preprocess
from xbyol.eval.evaluate import probe_and_knn
from xbyol.explain.actmax import ChannelObjective, maximize
from xbyol.explain.attribution import KernelShap, Lime
from xbyol.explain.targets import EmbeddingSimilarityTarget
from xbyol.metrics import spearman
from xbyol.metrics.instability import location_instability, peak_positions
from xbyol.metrics.shapley import coalition_images, coalitions, exact_shapley, r_squared, relative_l2
from xbyol.models import ResNet
from xbyol.models.resnet import BACKBONES, BasicBlock
from xbyol.run import load_run
from xbyol.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "explainer_references.json"
DEFAULT_RUNS = ROOT / "benchmarks" / "runs" / "explainer_references"
VARIANTS: dict[str, list[str]] = {
    "plain": ["model.backbone=resnet8_16_conv"],
    "interpretable": ["model.backbone=resnet8_16", "model.interpretable_layer=true"],
    "interpretable_tau0.5": ["model.backbone=resnet8_16", "model.interpretable_layer=true", "model.interpretable_tau=0.5"],
}


class ConvTop(nn.Module):
    """``resnet8_16`` with an ordinary 3x3 conv + ReLU on top: the interpretable layer's plain twin.

    Same shape and initialisation as :class:`xbyol.models.interpretable.InterpretableConv`,
    without the template mask and the filter loss. Backbone contract as :class:`ResNet`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _resnet8()
        self.num_features: int = self.backbone.num_features
        self.top = nn.Conv2d(self.num_features, self.num_features, 3, padding=1)
        nn.init.kaiming_normal_(self.top.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.top.bias)  # type: ignore[arg-type]
        self.relu = nn.ReLU()

    @property
    def feature_layer(self) -> nn.Module:
        return self.relu

    @property
    def stages(self) -> nn.Module:
        return self.backbone.stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.top(self.backbone.forward_features(x)))  # (B, C, h, w)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return f.mean(dim=(2, 3))  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _resnet8(**kw: Any) -> ResNet:
    return ResNet(BasicBlock, (1, 1, 1), width=16, stem="cifar")


def register_backbones() -> None:
    """Make ``resnet8_16`` and ``resnet8_16_conv`` known to :func:`xbyol.models.create_backbone` (once)."""
    if "resnet8_16" not in BACKBONES.names():
        BACKBONES.register("resnet8_16", doc="3-stage ResNet, 16 wide, CIFAR stem: 8x8 maps at 32 px (benchmark)")(_resnet8)
        BACKBONES.register("resnet8_16_conv", doc="resnet8_16 + a plain 3x3 conv + ReLU on top (benchmark)")(
            lambda **kw: ConvTop()
        )


def make_cfg(args: argparse.Namespace, variant: str, seed: int) -> Any:
    register_backbones()
    return xbyol.load_config(
        ROOT / "configs" / "shapes_byol.yaml",
        [f"name={variant}", f"out_dir={Path(args.runs) / f'seed{seed}'}", f"train.steps={args.steps}",
         f"data.batch_size={args.batch_size}", f"data.num_train={args.num_train}", f"data.num_test={args.num_test}",
         "train.progress=false", "train.device=cpu", f"train.seed={seed}", *VARIANTS[variant]],
    )


def run_dir(args: argparse.Namespace, variant: str, seed: int) -> Path:
    return Path(args.runs) / f"seed{seed}" / variant


def budget(args: argparse.Namespace) -> dict[str, Any]:
    return {"steps": args.steps, "batch_size": args.batch_size, "num_train": args.num_train, "num_test": args.num_test}


def cmd_train(args: argparse.Namespace) -> None:
    data = read_results(Path(args.json), budget(args), {"train": {}})
    for variant in args.variants:
        cfg = make_cfg(args, variant, args.seed)
        t0 = time.perf_counter()
        out = train(cfg, overwrite=True)
        secs = time.perf_counter() - t0
        print(f"seed {args.seed} {variant}: {secs:.0f} s -> {out}", flush=True)
        data["train"][f"seed{args.seed}/{variant}"] = {"train_s": secs, "threads": torch.get_num_threads(),
                                                       "machine": platform.machine()}
        write_results(Path(args.json), data)


# ----------------------------------------------------------------------------- location instability


def single_object_landmarks(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images holding exactly one object, and 5 landmarks of it: the centre and the four corners
    of its bounding box, ``(y, x)`` in continuous pixel coordinates (pixel ``r`` spans ``[r, r + 1)``).

    Returns:
        ``(indices [N], landmarks [N, 5, 2])``.
    """
    ids = ds.id_maps  # (N, S, S) uint8, 0 = background, j + 1 = object j
    counts = torch.stack([(ids == j).flatten(1).any(1) for j in (1, 2, 3)], dim=1).sum(1)  # (N,)
    keep = torch.nonzero(counts == 1).squeeze(1)
    out = []
    for i in keep.tolist():
        ys, xs = torch.nonzero(ids[i] > 0, as_tuple=True)
        y0, y1, x0, x1 = ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1
        out.append([[(y0 + y1) / 2, (x0 + x1) / 2], [y0, x0], [y0, x1], [y1, x0], [y1, x1]])
    return keep, torch.tensor(out, dtype=torch.float64)


def layer_maps(backbone: nn.Module, images: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """``forward_features`` of uint8 images ``[N, 3, S, S]`` -> ``[N, C, h, w]`` (the top layer's output)."""
    with torch.no_grad():
        return torch.cat([backbone.forward_features(preprocess(images[i : i + batch])).float()
                          for i in range(0, len(images), batch)])


def instability_of(backbone: nn.Module, ds: Any) -> dict[str, Any]:
    keep, landmarks = single_object_landmarks(ds)
    maps = layer_maps(backbone, ds.images[keep])  # (N, C, h, w)
    size = (ds.image_size, ds.image_size)
    pos, fired = peak_positions(maps, size)
    per_filter = location_instability(pos, landmarks, size, valid=fired)  # (C,)
    ok = ~torch.isnan(per_filter)
    return {"instability": float(per_filter[ok].mean()), "filters_scored": int(ok.sum()), "filters": int(len(per_filter)),
            "images": int(len(keep)), "map": list(maps.shape[2:]), "fired_fraction": float(fired.double().mean())}


def cmd_instability(args: argparse.Namespace) -> None:
    register_backbones()
    data = read_results(Path(args.json), budget(args), {"train": {}})
    res = data.setdefault("instability", {})
    for seed in args.seeds:
        for variant in args.variants:
            run = load_run(run_dir(args, variant, seed))
            test, train_ds = run.dataset("test"), run.dataset("train")
            entry = instability_of(run.backbone, test)
            scores, _ = probe_and_knn(run.encode, train_ds, test, run.cfg, torch.device("cpu"))
            entry.update(scores)
            if variant == "plain":
                rand = instability_of(run.random_init_backbone(seed), test)
                res[f"seed{seed}/random_init"] = rand
            res[f"seed{seed}/{variant}"] = entry
            print(f"seed {seed} {variant}: {entry}", flush=True)
            write_results(Path(args.json), data)


# ----------------------------------------------------------------------------- KernelSHAP / LIME vs exact Shapley


def grid_segments(size: int, rows: int, cols: int) -> torch.Tensor:
    """``[size, size]`` ids of a ``rows x cols`` grid, row-major."""
    r = torch.arange(size) * rows // size
    c = torch.arange(size) * cols // size
    return r[:, None] * cols + c[None, :]


def sample_grid(m: int) -> list[int]:
    """Sample counts from M + 1 to shap's default 2M + 2048, doubling from 2M."""
    counts = [m + 1]
    n = 2 * m
    while n < 1024:
        counts.append(n)
        n *= 2
    return [*counts, 2 * m + 2048]


def superpixel_values(maps: torch.Tensor, segments: torch.Tensor, m: int) -> torch.Tensor:
    """``[H, W]`` map (constant on each superpixel) -> ``[M]`` values."""
    return torch.stack([maps[segments == j].mean() for j in range(m)]).double()


class KeptLime:
    """The library's LIME adapter, keeping the Captum object of its last call (to read the surrogate's intercept)."""

    def __init__(self, explainer: Any) -> None:
        self.explainer = explainer
        self.made: list[Any] = []
        original = explainer.surrogate

        def keep(forward: nn.Module) -> Any:
            self.made.append(original(forward))
            return self.made[-1]

        explainer.surrogate = keep

    def intercept(self) -> float:
        return float(self.made[-1].interpretable_model.bias().reshape(-1)[0])


def cmd_shapley(args: argparse.Namespace) -> None:
    register_backbones()
    data = read_results(Path(args.json), budget(args), {"train": {}})
    run = load_run(run_dir(args, "plain", args.seed))
    net = run.backbone.eval()
    images = preprocess(run.dataset("test").images[: args.images])  # (I, 3, S, S)
    size = images.shape[-1]
    res = data.setdefault("shapley", {})
    for rows, cols in args.grids:
        m = rows * cols
        segments = grid_segments(size, rows, cols)
        counts = args.counts or sample_grid(m)
        held_out = torch.rand(args.held_out, m, generator=torch.Generator().manual_seed(1234)) < 0.5  # (Q, M)
        rec = res.setdefault(f"M{m}", {"kernelshap": {}, "lime": {}})
        rec.update({"M": m, "grid": [rows, cols], "images": args.images, "held_out": args.held_out})
        t0 = time.perf_counter()
        exact, truth_values, held_scores = [], [], []
        for img in images:
            target = EmbeddingSimilarityTarget.from_images(net, img)  # cosine to the image's own embedding
            phi, v = exact_shapley(lambda x, t=target: t(net(x)), img, segments, baseline=0.0)
            exact.append(phi)
            truth_values.append(v)
            with torch.no_grad():
                held_scores.append(target(net(coalition_images(img, segments, held_out, 0.0))).double())
        rec["exact_s"] = time.perf_counter() - t0
        phi_all = torch.stack(exact)  # (I, M)
        rec["efficiency_gap_max"] = float((phi_all.sum(1) - torch.stack([v[-1] - v[0] for v in truth_values])).abs().max())
        rec["exact_phi_abs_mean"] = float(phi_all.abs().mean())
        rec["best_linear_r2"] = best_linear_r2(torch.stack(truth_values), torch.stack(held_scores), held_out, m)
        for method in args.methods:
            for n in counts:
                point = rec[method].setdefault(str(n), {"per_seed": {}, "seconds": {}})
                t1 = time.perf_counter()
                for s in args.sampling_seeds:
                    errs, rhos, r2s = [], [], []
                    for i, img in enumerate(images):
                        target = EmbeddingSimilarityTarget.from_images(net, img)
                        torch.manual_seed(s)
                        if method == "kernelshap":
                            with warnings.catch_warnings():  # fewer than 2M samples warn
                                warnings.simplefilter("ignore")
                                ex = KernelShap(net, normalize=False, sign="all", segments=segments[None], n_samples=n,
                                                perturbations_per_eval=256)
                                est = superpixel_values(ex(img[None], target)[0], segments, m)
                            errs.append(float(relative_l2(est[None], phi_all[i : i + 1])))
                            rhos.append(float(spearman(est[None].float(), phi_all[i : i + 1].float())))
                        else:
                            kept = KeptLime(Lime(net, normalize=False, sign="all", segments=segments[None], n_samples=n,
                                                 perturbations_per_eval=256))
                            coef = superpixel_values(kept.explainer(img[None], target)[0], segments, m)
                            pred = kept.intercept() + held_out.double() @ coef  # (Q,)
                            r2s.append(float(r_squared(held_scores[i][None], pred[None])))
                    point["per_seed"][str(s)] = {"rel_l2": errs, "spearman": rhos} if method == "kernelshap" else {"r2": r2s}
                point["seconds"][",".join(map(str, args.sampling_seeds))] = time.perf_counter() - t1
                summary = summarise_point(list(point["per_seed"].values()))
                print(f"M={m} {method} n={n}: {({k: (round(v['mean'], 4), v['n']) for k, v in summary.items()})} "
                      f"({time.perf_counter() - t1:.0f} s)", flush=True)
                write_results(Path(args.json), data)


def best_linear_r2(values: torch.Tensor, held_scores: torch.Tensor, held_out: torch.Tensor, m: int) -> list[float]:
    """Per image, R^2 on the held-out coalitions of the least-squares linear surrogate fitted to all 2^M
    coalitions: the ceiling of any linear surrogate's fidelity (the game's non-additivity)."""
    x = torch.cat([torch.ones(2**m, 1, dtype=torch.float64), coalitions(m).double()], dim=1)  # (2^M, M+1)
    coef = torch.linalg.lstsq(x, values.double().T).solution  # (M+1, I)
    q = torch.cat([torch.ones(len(held_out), 1, dtype=torch.float64), held_out.double()], dim=1)  # (Q, M+1)
    return r_squared(held_scores.double(), (q @ coef).T).tolist()


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return sum(vals) / len(vals) if vals else float("nan")


def summarise_point(per_seed: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Each metric: the mean over images per sampling seed, then :func:`seed_summary` over the seeds."""
    return {k: seed_summary([_nanmean(d[k]) for d in per_seed]) for k in per_seed[0]}


# ----------------------------------------------------------------------------- activation maximisation


def cmd_actmax(args: argparse.Namespace) -> None:
    register_backbones()
    data = read_results(Path(args.json), budget(args), {"train": {}})
    res = data.setdefault("actmax", {})
    for seed in args.seeds:
        run = load_run(run_dir(args, "plain", seed))
        net = run.backbone.eval()
        test = preprocess(run.dataset("test").images)  # (N, 3, S, S)
        rows = []
        t0 = time.perf_counter()
        for unit in range(args.units):
            obj = ChannelObjective(args.layer, unit)
            with torch.no_grad():
                data_max = float(torch.cat([obj(net, test[i : i + 250]) for i in range(0, len(test), 250)]).max())
            img = maximize(net, obj, test.shape[-1], seed=seed, init_std=args.init_std)
            with torch.no_grad():
                score = float(obj(net, normalize(img)))
            rows.append({"unit": unit, "actmax": score, "test_max": data_max, "ratio": score / data_max if data_max > 0 else None})
        res[f"seed{seed}/init_std={args.init_std or 'default'}"] = {
            "layer": args.layer, "units": rows, "seconds": time.perf_counter() - t0, "test_images": len(test),
            "init_std": args.init_std}
        ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
        print(f"seed {seed}: ratio min {min(ratios):.3f} mean {sum(ratios) / len(ratios):.3f}", flush=True)
        write_results(Path(args.json), data)


# ----------------------------------------------------------------------------- tables


def paired_interval(diffs: list[float]) -> tuple[float, float] | None:
    """95% t interval (n - 1 degrees of freedom) of the mean of paired differences; None below 2 pairs."""
    if len(diffs) < 2:
        return None
    n = len(diffs)
    mean = statistics.mean(diffs)
    half = float(scipy.stats.t.ppf(0.975, n - 1)) * statistics.stdev(diffs) / n**0.5
    return (mean - half, mean + half)


def paired_verdict(iv: tuple[float, float] | None) -> str:
    if iv is None:
        return "undecided (an interval needs 2 seeds)"
    if iv[1] < 0:
        return "lower"
    if iv[0] > 0:
        return "higher"
    return "no difference at this budget"


def _cell(s: dict[str, Any], digits: int = 3) -> str:
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}" if s["sd"] is not None else f"{s['mean']:.{digits}f} (n=1)"


def smallest_within(points: dict[str, Any], key: str, limit: float) -> int | None:
    """The smallest sample count whose mean (over sampling seeds) of ``key`` is <= ``limit``."""
    ok = [int(n) for n, p in points.items() if summarise_point(list(p["per_seed"].values()))[key]["mean"] <= limit]
    return min(ok) if ok else None


def shapley_tables(data: dict[str, Any]) -> list[str]:
    out = []
    for _name, rec in sorted(data.get("shapley", {}).items(), key=lambda kv: kv[1]["M"]):
        m = rec["M"]
        ceiling = statistics.mean(rec["best_linear_r2"])
        out.append(f"M = {m} superpixels ({rec['grid'][0]} x {rec['grid'][1]} grid), {rec['images']} test images, "
                   f"exact values from all {2**m} coalitions (largest efficiency gap {rec['efficiency_gap_max']:.1e}; "
                   f"mean |phi| {rec['exact_phi_abs_mean']:.4f}). Each cell: mean over the images per sampling seed, "
                   "then mean ± sd over the sampling seeds "
                   f"{', '.join(next(iter(rec['kernelshap'].values()))['per_seed']) if rec['kernelshap'] else '-'}.\n")
        out.append("| samples | KernelSHAP relative L2 error | KernelSHAP Spearman vs exact | LIME R^2 on held-out coalitions |")
        out.append("|---|---|---|---|")
        counts = sorted({int(n) for n in rec["kernelshap"]} | {int(n) for n in rec["lime"]})
        for n in counts:
            ks = rec["kernelshap"].get(str(n))
            li = rec["lime"].get(str(n))
            kss = summarise_point(list(ks["per_seed"].values())) if ks else None
            lis = summarise_point(list(li["per_seed"].values())) if li else None
            out.append(f"| {n} | {_cell(kss['rel_l2']) if kss else '-'} | {_cell(kss['spearman']) if kss else '-'} | "
                       f"{_cell(lis['r2']) if lis else '-'} |")
        first = smallest_within(rec["kernelshap"], "rel_l2", 0.10)
        out.append(f"\nSmallest count with mean KernelSHAP error <= 0.10: {first if first else 'none of those measured'}. "
                   f"Best linear surrogate fitted to all {2**m} coalitions: R^2 {ceiling:.3f} on the same held-out "
                   f"coalitions (mean over images; the ceiling of any linear surrogate).\n")
    return out


def actmax_table(data: dict[str, Any]) -> list[str]:
    res = data.get("actmax", {})
    if not res:
        return []
    out = ["| training seed, start | units | ratio min | ratio median | ratio mean | units above every test image |",
           "|---|---|---|---|---|---|"]
    means: dict[str, list[float]] = {}
    for key in sorted(res):
        ratios = [u["ratio"] for u in res[key]["units"] if u["ratio"] is not None]
        means.setdefault(key.split("/")[1], []).append(statistics.mean(ratios))
        seed, init = key.split("/")
        out.append(f"| {seed[4:]}, {init} | {len(res[key]['units'])} (`{res[key]['layer']}` 0-{len(res[key]['units']) - 1}) | "
                   f"{min(ratios):.2f} | {statistics.median(ratios):.2f} | {statistics.mean(ratios):.2f} | "
                   f"{sum(r > 1 for r in ratios)} / {len(ratios)} |")
    for init, vals in means.items():
        out.append(f"\nMean ratio over the training seeds, {init}: {_cell(seed_summary(vals), 2)}.")
    out.append("")
    return out


INSTAB_ROWS = ("random_init", "plain", "interpretable", "interpretable_tau0.5")


def instability_tables(data: dict[str, Any]) -> list[str]:
    res = data.get("instability", {})
    if not res:
        return []
    seeds = sorted({k.split("/")[0] for k in res})
    out = ["| top layer | location instability | probe | kNN | filters scored | seeds |", "|---|---|---|---|---|---|"]
    for v in INSTAB_ROWS:
        rows = [res[f"{s}/{v}"] for s in seeds if f"{s}/{v}" in res]
        if not rows:
            continue
        cells = [_cell(seed_summary([r.get(k) for r in rows]), 4 if k == "instability" else 3)
                 if any(k in r for r in rows) else "-" for k in ("instability", "linear_probe", "knn")]
        scored = f"{statistics.mean(r['filters_scored'] for r in rows):.0f} / {rows[0]['filters']}"
        out.append(f"| {v} | {' | '.join(cells)} | {scored} | {', '.join(s[4:] for s in seeds if f'{s}/{v}' in res)} |")
    out.append("\n| A - B, paired by training seed | location instability | probe | kNN |")
    out.append("|---|---|---|---|")
    for a in ("interpretable", "interpretable_tau0.5"):
        for metric_row in [("plain",)]:
            b = metric_row[0]
            pairs = [s for s in seeds if f"{s}/{a}" in res and f"{s}/{b}" in res]
            if not pairs:
                continue
            cells = []
            for k in ("instability", "linear_probe", "knn"):
                diffs = [res[f"{s}/{a}"][k] - res[f"{s}/{b}"][k] for s in pairs]
                iv = paired_interval(diffs)
                span = f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "-"
                cells.append(f"{paired_verdict(iv)}: {statistics.mean(diffs):+.4f}, 95% {span}")
            out.append(f"| {a} - {b} (seeds {', '.join(s[4:] for s in pairs)}) | {' | '.join(cells)} |")
    return out


def merge(into: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``part`` into ``into`` (dicts merge key by key; anything else is replaced)."""
    for k, v in part.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def cmd_merge(args: argparse.Namespace) -> None:
    """Merge the results files of ``--parts`` (made side by side, one per process) into ``--json``."""
    data = read_results(Path(args.json), budget(args), {"train": {}})
    for part in args.parts:
        other = json.loads(Path(part).read_text())
        if other.get("budget") != data["budget"]:
            raise SystemExit(f"{part}: made with budget {other.get('budget')}, not {data['budget']}")
        merge(data, other)
    write_results(Path(args.json), data)


def cmd_tables(args: argparse.Namespace) -> None:
    data = json.loads(Path(args.json).read_text())
    print("\n".join(["### KernelSHAP and LIME against exact Shapley values", "", *shapley_tables(data),
                     "### Activation maximisation against the test split", "", *actmax_table(data),
                     "### Location instability of the top layer", "", *instability_tables(data)]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["train", "instability", "shapley", "actmax", "tables", "merge"])
    ap.add_argument("--seed", type=int, default=0, help="train: the training seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--num-train", type=int, default=4000)
    ap.add_argument("--num-test", type=int, default=1000)
    ap.add_argument("--images", type=int, default=20, help="shapley: test images explained")
    ap.add_argument("--grids", type=lambda t: tuple(int(v) for v in t.split("x")), nargs="+", default=[(3, 4)],
                    help="shapley: superpixel grids ROWSxCOLS (M = rows x cols <= 12)")
    ap.add_argument("--methods", nargs="+", default=["kernelshap", "lime"], choices=["kernelshap", "lime"])
    ap.add_argument("--counts", type=int, nargs="+", help="shapley: sample counts (default M+1, 2M, 4M, ... , 2M+2048)")
    ap.add_argument("--sampling-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--held-out", type=int, default=256, help="shapley: held-out coalitions for LIME's R^2")
    ap.add_argument("--units", type=int, default=20, help="actmax: channels 0 .. UNITS-1 of --layer")
    ap.add_argument("--layer", default="relu", help="actmax: layer of the plain network (its top conv's ReLU)")
    ap.add_argument("--init-std", type=float, help="actmax: maximize(init_std=...) (default: the library's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default=str(DEFAULT_RUNS))
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    ap.add_argument("--parts", nargs="+", default=[], help="merge: results files to merge into --json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    {"train": cmd_train, "instability": cmd_instability, "shapley": cmd_shapley, "actmax": cmd_actmax, "tables": cmd_tables, "merge": cmd_merge}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
