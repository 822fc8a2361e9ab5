"""Time to first step: how long a user waits before a run on a large image folder starts.

Writes Fashion-MNIST (Debian's ``dataset-fashion-mnist``, 60,000 + 10,000 28x28 images) as
a folder of PNGs once (``--folder``, default ``/tmp/xbyol-fashion-png``), then times, each
in a fresh process and ``--reps`` times in a row (the first run of a series is the cold
one: with ``--drop-caches`` the page cache is emptied before it, so the images, torch and
xbyol are read from disk; xbyol itself caches nothing):

- **open train** / **open test**: ``create_dataset(DataCfg(name="folder", ...), split)`` of the 60,000-image
  training folder and of the 10,000-image test folder (``data.test_root``);
- **one-step run**: ``xbyol train --set data.name=folder ... --set train.steps=1`` end to
  end (imports, opening the folder, building the model, one step, the checkpoint).

    python benchmarks/first_step.py --drop-caches --json benchmarks/results/first_step.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def write_folder(out: Path) -> None:
    """Fashion-MNIST's official split as ``out/{train,test}/<class>/<index>.png`` (once)."""
    if (out / "done").is_file():
        return
    if not FASHION.is_dir():
        sys.exit(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = np.frombuffer(gzip.open(FASHION / f"{prefix}-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
        labels = np.frombuffer(gzip.open(FASHION / f"{prefix}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
        for name in CLASSES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(images.reshape(-1, 28, 28), labels)):
            Image.fromarray(img).save(out / split / CLASSES[y] / f"{i:05d}.png")
    (out / "done").write_text("")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/xbyol-fashion-png"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--drop-caches", action="store_true", help="empty the page cache before the first repetition (root only)")
    args = ap.parse_args()
    write_folder(args.folder)
    if args.drop_caches:  # a cold start: nothing of the folder, torch or xbyol in the page cache (needs root)
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    train_root, test_root = args.folder / "train", args.folder / "test"
    rows: dict[str, list[float]] = {"open train (60,000)": [], "open test (10,000)": [], "one-step run": []}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for split, key in (("train", "open train (60,000)"), ("test", "open test (10,000)")):
                # the import of torch is timed apart: only the opening itself counts here
                code = (
                    "import time, sys; from xbyol.config import DataCfg; from xbyol.data import create_dataset; "
                    "t = time.perf_counter(); "
                    f"create_dataset(DataCfg(name='folder', root='{train_root}', test_root='{test_root}'), '{split}'); "
                    "print(time.perf_counter() - t)"
                )
                out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                rows[key].append(float(out.stdout.strip().splitlines()[-1]))
            rows["one-step run"].append(timed([
                sys.executable, "-m", "xbyol", "train", "--set", "data.name=folder", "--set", f"data.root={train_root}",
                "--set", f"data.test_root={test_root}", "--set", "train.steps=1", "--set", "train.progress=false",
                "--set", f"out_dir={tmp}", "--set", f"name=first{rep}",
            ]))
            print(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()), flush=True)
    load.append(os.getloadavg()[0])
    print("\n| stage | first (cold) | later runs |\n|---|---|---|")
    for key, v in rows.items():
        print(f"| {key} | {v[0]:.2f} s | {', '.join(f'{x:.2f}' for x in v[1:])} s |")
    print(f"\nload average {load[0]:.1f} at the start, {load[1]:.1f} at the end")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": rows, "load": load}, indent=2))


if __name__ == "__main__":
    main()
