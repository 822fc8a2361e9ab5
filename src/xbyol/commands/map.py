"""``xbyol map``: 2-D maps (PCA, t-SNE, UMAP) of a run's test embeddings."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map",
        help="2-D map of test embeddings (pca, tsne, umap) coloured by label or concept",
        description=(
            "Embed RUN_DIR's test images with its encoder, project them to 2-D (scikit-learn PCA or t-SNE; "
            "UMAP with umap-learn installed) and colour the points by label or by a concept group (the first "
            "concept of the group an image has, 'none' otherwise). Writes map_<method>_<colour>.png and .csv "
            "(index, x, y, label, one column per concept group) under RUN_DIR/maps/ or --out."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--method", choices=["pca", "tsne", "umap"], default="pca")
    p.add_argument("--color-by", choices=["label", "concept"], default="label")
    p.add_argument("--group", help="concept group for --color-by concept (default: the dataset's first)")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--limit", type=int, metavar="N",
                   help="only N images, sampled evenly across the labels (t-SNE on thousands of points takes a while)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default RUN_DIR/maps)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.explain.embedding_maps import embedding_map
    from xbyol.run import load_run

    if args.method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            raise ValueError("--method umap needs the umap-learn package: pip install umap-learn (or use pca / tsne)") from None
    if args.limit is not None and args.limit < 3:
        raise ValueError(f"--limit must be at least 3 (a map needs 3 points), got {args.limit}")
    run_ = load_run(args.run_dir, device=args.device)
    paths = embedding_map(
        run_, args.method, args.color_by, args.group, args.split, args.limit, args.seed, args.out,
        progress=not args.no_progress,
    )
    print(f"written: {paths['png']}\n         {paths['csv']}")
    return 0
