"""Single-core generation speed of the ``shapes`` dataset at 32 and 64 px.

Three numbers per size, best of ``--repeats`` runs, one thread, measured in process CPU
time (so other jobs on a shared machine do not count against it):

- generate: building the split (images, object-id maps, attribute table, labels,
  captions): ``ShapesDataset(num=N)``. This is the figure held to the target.
- read: ``ds[i]`` for every image (copies the image, builds the [24, H, W] masks and
  the concept vector from the id map).
- end-to-end: generate then read every sample once.

Exits non-zero if generation at 32 px is below ``--target`` images/s (default 10,000).

    python benchmarks/data_speed.py [--num 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from xbyol.data.shapes import ShapesDataset


def best_time(fn, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Best (CPU, wall) seconds of ``repeats`` calls; CPU = process time, fair on a shared machine."""
    cpu = wall = float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
    return cpu, wall


def measure(size: int, num: int, repeats: int) -> dict[str, float]:
    ShapesDataset("train", num=256, image_size=size)  # warm-up: imports, allocator
    gen, gen_wall = best_time(lambda: ShapesDataset("train", num=num, image_size=size, seed=0), repeats)
    ds = ShapesDataset("train", num=num, image_size=size, seed=0)

    def read_all() -> None:
        for i in range(len(ds)):
            ds[i]

    read, read_wall = best_time(read_all, repeats)
    return {
        "generate": num / gen,
        "read": num / read,
        "end-to-end": num / (gen + read),
        "generate_wall": num / gen_wall,
        "end-to-end_wall": num / (gen_wall + read_wall),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=20000, help="images per measurement at 32 px (half at 64 px)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target", type=float, default=10000.0, help="minimum generation images/s at 32 px")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for size, num in ((32, args.num), (64, max(1, args.num // 2))):
        r = measure(size, num, args.repeats)
        results[size] = r
        print(
            f"shapes {size}px, {num} images, 1 thread, CPU time: generate {r['generate']:,.0f} img/s | "
            f"read {r['read']:,.0f} img/s | end-to-end {r['end-to-end']:,.0f} img/s "
            f"(wall clock: generate {r['generate_wall']:,.0f}, end-to-end {r['end-to-end_wall']:,.0f})",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ok = results[32]["generate"] >= args.target
    print(f"target: generate >= {args.target:,.0f} img/s at 32 px: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
