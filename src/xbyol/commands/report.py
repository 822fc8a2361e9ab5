"""``xbyol report``: a self-contained HTML report of a run."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run",
        description=(
            "Write one HTML file (figures embedded, opens without network) about RUN_DIR: config, dataset, "
            "hardware and duration; training curves; evaluation beside its baselines; concept scores; an "
            "embedding map; a heatmap gallery of test images x explainer methods x their concepts; the "
            "explanation metrics and the dissection summary when they were computed. Sections whose data is "
            "missing name the command that computes it."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="PATH", help="output HTML file (default RUN_DIR/report.html)")
    p.add_argument("--images", type=int, default=6, metavar="N", help="test images in the heatmap gallery (0: none; default 6)")
    p.add_argument("--image-index", type=int, action="append", metavar="I",
                   help="explicit test-split image for the gallery (repeatable; overrides --images)")
    p.add_argument("--methods", metavar="A,B,...",
                   help="explainer methods of the gallery (default gradcam,gradcampp,scorecam,integrated_gradients)")
    p.add_argument("--concepts-per-image", type=int, default=3, metavar="K", help="concepts explained per gallery image")
    p.add_argument("--map", default="tsne", choices=["pca", "tsne", "umap", "none"], help="embedding-map method (default tsne)")
    p.add_argument("--map-points", type=int, default=1000, metavar="N", help="most test images in the embedding map")
    p.add_argument("--no-confusion", action="store_true", help="skip the concept-confusion figures")
    p.add_argument("--heatmap-scale", choices=["image", "shared"], default="image",
                   help="gallery heatmaps: each scaled to its own range (image, default) or one scale per method and "
                        "concept across the gallery's images (shared: a weaker map looks weaker)")
    p.add_argument("--smoothing", type=float, default=0.0, metavar="W",
                   help="also draw training curves as an exponential moving average with weight W in [0, 1), e.g. 0.9")
    p.add_argument("--views", type=int, default=4, metavar="N",
                   help="training images shown with their augmented BYOL views (0: none; default 4)")
    p.add_argument("--neighbours", type=int, default=4, metavar="N",
                   help="test images in the nearest-neighbour gallery (0: none; default 4)")
    p.add_argument("--k-neighbours", type=int, default=5, metavar="K", help="neighbours shown per image (default 5)")
    p.add_argument("--baseline", action="append", default=[], metavar="RUN_DIR",
                   help="another run whose eval.json is shown beside this one (repeatable), e.g. a byol or clip run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.report import ReportOptions, write_report

    for flag, value in (("--images", args.images), ("--views", args.views), ("--neighbours", args.neighbours)):
        if value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if not 1 <= args.k_neighbours <= 50:
        raise ValueError(f"--k-neighbours must be in 1..50, got {args.k_neighbours}")
    if not 0.0 <= args.smoothing < 1.0:
        raise ValueError(f"--smoothing must be in [0, 1), got {args.smoothing}")
    opts = ReportOptions(
        gallery_images=args.images,
        methods=args.methods.split(",") if args.methods else None,
        max_concepts=args.concepts_per_image,
        gallery_indices=args.image_index,
        embedding_map=None if args.map == "none" else args.map,
        map_points=args.map_points,
        confusion=not args.no_confusion,
        baselines=args.baseline,
        smoothing=args.smoothing,
        heatmap_scale=args.heatmap_scale,
        views=args.views,
        neighbours=args.neighbours,
        k_neighbours=args.k_neighbours,
        device=args.device,
        progress=not args.no_progress,
    )
    path = write_report(args.run_dir, args.out, opts)
    print(f"written: {path}")
    return 0
