"""``xbyol maximize``: activation maximisation of units, channels or concept directions."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "maximize",
        help="synthesise images that maximally excite a unit or a concept direction",
        description=(
            "Activation maximisation on RUN_DIR's encoder: optimise input images (Adam; jitter, total "
            "variation, periodic blur; optional Fourier / decorrelated-colour parameterisation) to maximise "
            "a channel of a layer (--unit LAYER:K, e.g. stages.3:12; K alone = the feature layer; --spatial "
            "for the centre position only) or the cosine with a concept text in the run's concept space "
            "(--concept 'red'). Each target is one row of N images in a PNG grid. Deterministic under --seed."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--unit", action="append", default=[], metavar="LAYER:K", help="channel target (repeatable)")
    p.add_argument("--concept", action="append", default=[], metavar="TEXT", help="concept-direction target (repeatable)")
    p.add_argument("--spatial", action="store_true", help="unit targets: maximise the centre position, not the mean")
    p.add_argument("--n", type=int, default=4, help="images per target (independent starts)")
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--jitter", type=int, default=None, help="max random shift in pixels per step (default image_size // 32, >= 1)")
    p.add_argument("--tv", type=float, default=0.01, help="total-variation weight")
    p.add_argument("--blur-every", type=int, default=4, help="blur the pixels every N steps (0: never)")
    p.add_argument("--param", choices=["pixel", "fourier"], default="pixel")
    p.add_argument("--no-decorrelate", action="store_true", help="optimise RGB directly")
    p.add_argument("--image-size", type=int, help="side of the images (default: the run's data.image_size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG path (default RUN_DIR/maximize/<targets>.png)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:60]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.augment import normalize
    from xbyol.explain.actmax import ChannelObjective, DirectionObjective, Objective, maximize, parse_unit, save_grid
    from xbyol.run import load_run

    if not args.unit and not args.concept:
        raise ValueError("name a target: --unit LAYER:K (e.g. stages.3:12) or --concept TEXT")
    if args.n < 1 or args.steps < 1:
        raise ValueError(f"--n and --steps must be >= 1, got {args.n} and {args.steps}")
    run_ = load_run(args.run_dir, device=args.device)
    model = run_.backbone
    targets: list[tuple[str, Objective]] = []
    for spec in args.unit:
        layer, k = parse_unit(spec) if ":" in spec else (None, int(spec) if spec.isdigit() else -1)
        if k < 0:
            raise ValueError(f"--unit must be LAYER:K or K, got {spec!r}")
        targets.append((spec, ChannelObjective(layer, k, "centre" if args.spatial else "mean")))
    if args.concept:
        try:
            # imported on use, not at the top: see xbyol.commands (--help must not load torch)
            from xbyol.concepts.projection import concept_projection
        except ImportError as e:  # pragma: no cover - the module ships with xbyol
            raise ValueError(f"--concept needs xbyol.concepts.projection: {e}") from e
        head, bank = concept_projection(run_)
        directions = bank.embed(list(args.concept))  # (T, E)
        for text, d in zip(args.concept, directions):
            targets.append((f"concept:{text}", DirectionObjective(d, head)))
    size = args.image_size or run_.cfg.data.image_size
    rows = []
    for name, obj in targets:
        imgs = maximize(
            model, obj, size, steps=args.steps, lr=args.lr, jitter=args.jitter, tv_weight=args.tv,
            blur_every=args.blur_every, param=args.param, decorrelate=not args.no_decorrelate,
            seed=args.seed, n=args.n, device=run_.device,
        )
        with torch.no_grad():
            scores = obj(model, normalize(imgs.to(run_.device)))  # type: ignore[operator]
        print(f"{name}: scores {', '.join(f'{s:.4f}' for s in scores.tolist())}")
        rows.append(imgs)
    out = Path(args.out) if args.out else run_.paths.maximize / (_slug("+".join(n for n, _ in targets)) + ".png")
    save_grid(torch.cat(rows), out, nrow=args.n)
    print(f"written: {out} ({len(targets)} rows x {args.n} images)")
    return 0
