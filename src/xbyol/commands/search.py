"""``xbyol search RUN_DIR --text "..." | --image PATH``: cross-modal retrieval from a trained run."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="find images for a text, or captions for an image, with a cross-modal run",
        description=(
            "Search the images (--text) or the distinct captions (--image) of a dataset split with a run "
            "trained by method xmodal or clip. Images are printed as dataset indices (and file paths "
            "for datasets read from disk)."
        ),
    )
    p.add_argument("run_dir", help="run directory (holds config.yaml and checkpoints/last.pt)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help='query text, e.g. "a small red star"')
    q.add_argument("--image", help="query image file")
    p.add_argument("-k", "--top", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--split", choices=["train", "test"], default="test", help="split searched (default test)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.eval.retrieval_eval import search_captions, search_images
    from xbyol.run import load_run

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    loaded = load_run(args.run_dir, device=args.device)
    if args.text is not None:
        hits = search_images(loaded, args.text, k=args.top, split=args.split)
        print(f"top {len(hits)} {args.split} images for {args.text!r}:")
        for h in hits:
            where = h["path"] if h["path"] is not None else f"index {h['index']}"
            print(f"{h['rank']:>3}  {h['score']:+.3f}  {where}  [{h['caption']}]")
    else:
        hits = search_captions(loaded, args.image, k=args.top, split=args.split)
        print(f"top {len(hits)} {args.split} captions for {args.image}:")
        for h in hits:
            print(f"{h['rank']:>3}  {h['score']:+.3f}  {h['caption']}")
    return 0
