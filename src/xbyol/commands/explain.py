"""``xbyol explain``: heatmaps for a target, written as PNG overlays and ``.npy`` arrays."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="heatmaps of why the encoder scores a target (concept, image, class, dim)",
        description=(
            "Explain the encoder of RUN_DIR. An SSL encoder has no logits, so name the target: "
            "'concept:red circle' (similarity to a concept text in concept space), 'image:PATH' or "
            "'image:INDEX' (similarity to a reference image), 'class:K' (linear probe of `xbyol eval`), "
            "'dim:J' (one embedding dimension) or 'norm'. Images: file paths, or test-set indices "
            "with --indices, or --sample N test images spread over the labels. Writes DIR/<image>_<method>.png "
            "overlays (upscaled to --png-size px so a 32 px image can be seen; the map's opacity follows its value) "
            "and the raw heatmaps DIR/heatmaps_<method>.npy [N,H,W] at the model's resolution."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--method", "-m", action="append", help="explainer (repeatable; default gradcam); see --list")
    p.add_argument("--target", "-t", help="what to explain, e.g. 'concept:red circle'")
    p.add_argument("--images", nargs="+", default=[], metavar="PATH", help="image files to explain")
    p.add_argument("--indices", nargs="+", type=int, default=[], metavar="I", help="test-set indices to explain")
    p.add_argument("--sample", type=int, metavar="N",
                   help="explain N test images sampled evenly across the labels (class-sorted data: every class)")
    p.add_argument("--png-size", type=int, default=256, metavar="PX",
                   help="smallest side of the PNG overlays, reached by an integer nearest-neighbour upscale (default 256)")
    p.add_argument("--layer", help="CAM layer by dotted name (default: the backbone's last stage)")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/explain)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--list", action="store_true", help="list the explainers and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.augment import preprocess
    from xbyol.data.io import load_image
    from xbyol.data.sampling import dataset_labels, stratified_indices
    from xbyol.explain.base import EXPLAINERS, cam_names, explain
    from xbyol.explain.render import OVERLAY_ALPHA, OVERLAY_CMAP, save_overlay
    from xbyol.explain.spec import parse_target
    from xbyol.run import load_run

    if args.list:
        print("\n".join(EXPLAINERS.names()))
        return 0
    if not args.target:
        raise ValueError("--target is required, e.g. --target 'concept:red circle' (see --help)")
    if args.sample is not None and args.sample < 1:
        raise ValueError(f"--sample must be at least 1, got {args.sample}")
    if not args.images and not args.indices and not args.sample:
        raise ValueError("give images to explain: --images PATH ..., --indices I ... or --sample N")
    if not 1 <= args.png_size <= 4096:
        raise ValueError(f"--png-size must be in 1..4096, got {args.png_size}")
    methods = EXPLAINERS.check(args.method or ["gradcam"])
    if args.layer and any(m not in cam_names() for m in methods):
        raise ValueError(f"--layer applies to the CAM methods only ({', '.join(cam_names())})")
    run_ = load_run(args.run_dir, device=args.device)
    size = run_.cfg.data.image_size
    imgs, labels = [], []
    for path in args.images:
        imgs.append(load_image(path, size))
        labels.append(Path(path).stem)
    if args.indices or args.sample:
        test = run_.dataset("test")
        indices = list(args.indices)
        if args.sample:
            indices += [i for i in stratified_indices(dataset_labels(test), args.sample) if i not in indices]
        for i in indices:
            if not 0 <= i < len(test):
                raise ValueError(f"--indices: {i} is outside the test split (0..{len(test) - 1})")
            imgs.append(test[i]["image"])
            labels.append(f"test{i}")
    images = torch.stack(imgs).to(run_.device)
    target = parse_target(args.target, run_)
    out = Path(args.out) if args.out else run_.paths.explain
    out.mkdir(parents=True, exist_ok=True)
    x = preprocess(images)
    for method in methods:
        heat = explain(run_.backbone, x, target, method=method, layer=args.layer if method in cam_names() else None)
        np.save(out / f"heatmaps_{method}.npy", heat.detach().cpu().numpy())
        for img, h, name in zip(images.cpu(), heat.detach().cpu(), labels):
            save_overlay(out / f"{name}_{method}.png", img, h, alpha=OVERLAY_ALPHA, cmap=OVERLAY_CMAP, by_value=True,
                         min_size=args.png_size)
        print(f"{method}: {len(labels)} heatmaps -> {out}")
    with torch.no_grad():
        scores = target(run_.backbone(x)).cpu().tolist()
    for name, s in zip(labels, scores):
        print(f"  {name}: target score {s:.4f}")
    return 0
