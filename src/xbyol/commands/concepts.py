"""``xbyol concepts RUN_DIR IMAGE...``: each image's top concepts with their weights."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "concepts",
        help="top concepts (with weights) of each image's embedding",
        description=(
            "Print the top concepts of each image's embedding. xbyol runs use their concept attention "
            "weights; other runs a concept map fitted after training on the training labels "
            "(cached outside RUN_DIR, in the xbyol cache directory, keyed by the checkpoint). Images are files (resized and centre-cropped to the "
            "run's image size) or test-set indices with --indices."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    p.add_argument("--indices", nargs="+", type=int, default=[], metavar="I", help="test-set indices")
    p.add_argument("--top-k", "-k", type=int, default=5, help="concepts per image (default 5)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.concepts.explain_embedding import explain_embedding
    from xbyol.data.io import load_image
    from xbyol.run import load_run

    if not args.images and not args.indices:
        raise ValueError("give images: IMAGE ... (files) or --indices I ... (test-set indices)")
    run_ = load_run(args.run_dir, device=args.device)
    size = run_.cfg.data.image_size
    names, images = [], []
    for path in args.images:
        images.append(load_image(path, size))
        names.append(str(path))
    if args.indices:
        test = run_.dataset("test")
        for i in args.indices:
            if not 0 <= i < len(test):
                raise ValueError(f"--indices: {i} is outside the test split (0..{len(test) - 1})")
            sample = test[i]
            images.append(sample["image"])
            caption = f" ({sample['caption']})" if sample.get("caption") else ""
            names.append(f"test[{i}]{caption}")
    tops = explain_embedding(run_, torch.stack(images), top_k=args.top_k)
    for name, top in zip(names, tops):
        print(name)
        for concept, weight in top:
            print(f"  {weight:6.3f}  {concept}")
    return 0
