"""Images per second that one data-loader worker decodes from a folder of JPEGs (``folder`` dataset, one thread).

Each row: a synthetic JPEG folder (:mod:`jpeg_folder`) at a source size, read at a
training size with ``dataset.get_batch`` (what a DataLoader worker runs: decode, RGB,
shorter-side resize, centre crop, collate), ``--repeats`` passes over ``--num`` images,
best pass. Large JPEGs are decoded at a reduced scale (``Image.draft``) when that still
covers twice the output; the ``draft off`` row decodes the same files at full size, to
show what the draft saves. On a CUDA run ``data.num_workers: auto`` runs cores - 1 such
workers, so a step of ``B`` images needs about ``B / (rate x workers)`` seconds of decoding
hidden behind it.

    python benchmarks/decode_rate.py --json benchmarks/results/decode_rate.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import JpegImagePlugin

from jpeg_folder import make_jpeg_folder
from xbyol.data.folder import FolderDataset

# (source width, source height, training size, draft)
ROWS = [(224, 224, 224, True), (96, 96, 96, True), (500, 375, 224, True), (500, 375, 96, True),
        (1600, 1200, 224, True), (1600, 1200, 224, False)]


@contextlib.contextmanager
def draft_disabled() -> Iterator[None]:
    """JPEGs decoded at full size: ``Image.draft`` made a no-op for the block."""
    original = JpegImagePlugin.JpegImageFile.draft
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        JpegImagePlugin.JpegImageFile.draft = original  # type: ignore[method-assign]


def decode_rate(root: Path, size: int, num: int, repeats: int, draft: bool) -> dict[str, float]:
    """Best of ``repeats`` passes of ``get_batch`` over every image: images/s by wall and by process CPU time."""
    ds = FolderDataset(root, image_size=size, split="train")
    ds.get_batch(range(min(8, len(ds))), masks=False)  # warm-up: imports, page cache
    best_wall = best_cpu = float("inf")
    with draft_disabled() if not draft else contextlib.nullcontext():
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            for start in range(0, len(ds), 64):
                ds.get_batch(range(start, min(start + 64, len(ds))), masks=False)
            best_wall = min(best_wall, time.perf_counter() - w0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    return {"images": len(ds), "img_s_wall": len(ds) / best_wall, "img_s_cpu": len(ds) / best_cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=400, help="images per folder (the train split reads 80%%)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h, size, draft in ROWS:
            root = Path(tmp, f"{w}x{h}")
            if not root.exists():
                make_jpeg_folder(root, args.num, (w, h))
            r = decode_rate(root, size, args.num, args.repeats, draft)
            rows.append({"source": f"{w}x{h}", "size": size, "draft": draft, **r})
            print(f"| {w}x{h} | {size} | {'on' if draft else 'off'} | {r['img_s_wall']:.0f} | {r['img_s_cpu']:.0f} |", flush=True)
    out = {"command": " ".join(["decode_rate.py", *(argv if argv is not None else sys.argv[1:])]),
           "load_average": os.getloadavg(), "threads": 1, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
