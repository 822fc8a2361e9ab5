"""What the trainer's safety checks cost per step, as a fraction of the step itself.

The trainer (``xbyol.training.trainer``) adds two checks to a run:

- **loss**: ``torch.isfinite(loss)`` read on the host every step (CPU only; on CUDA the
  flag stays on the device and is read at log cadence);
- **weights**: one fused max-|x| over every parameter and buffer
  (:func:`xbyol.training.checkpoint.first_bad_tensor`), at log cadence
  (``train.log_every``, default 10) and before every checkpoint.

For each backbone this times, alternately for ``--reps`` repetitions in one process, a
full BYOL training step (forward, backward, optimiser, EMA on two fixed views), the loss
check and the weight check, and reports the median of each and the per-step overhead
``(loss + weights / log_every) / step``.

    python benchmarks/health_checks.py --json benchmarks/results/health_checks.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from xbyol.config import DataCfg, from_dict
from xbyol.data import create_dataset
from xbyol.data.base import collate
from xbyol.methods import create_method
from xbyol.training.checkpoint import first_bad_tensor
from xbyol.training.optim import build_optimizer
from xbyol.training.schedules import tau_at

SETTINGS = {"resnet10_16": 256, "resnet18_cifar": 128}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(backbone: str, batch_size: int, reps: int, log_every: int) -> dict[str, float]:
    cfg = from_dict({}, {"model.backbone": backbone, "data.batch_size": batch_size, "data.num_train": batch_size, "train.optimizer": "sgd"})
    dataset = create_dataset(DataCfg(name="shapes", num_train=batch_size, num_test=1, image_size=32, seed=0), "train")
    method = create_method(cfg, dataset)
    method.train()
    optimizer = build_optimizer(method, cfg.train, 0.05)
    batch = collate([dataset[i] for i in range(batch_size)])
    state = {"loss": torch.zeros(())}

    def step() -> None:
        out = method.training_step(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        method.after_optimizer_step(tau_at(0, 100, cfg.method.tau_base))
        state["loss"] = out["loss"].detach()

    def loss_check() -> None:
        assert bool(torch.isfinite(state["loss"]))

    named = list(method.named_parameters()) + list(method.named_buffers())

    def weight_check() -> None:
        assert first_bad_tensor(named, max_abs=cfg.train.max_abs_weight) is None

    step()  # warm-up: oneDNN kernel creation
    times: dict[str, list[float]] = {"step": [], "loss": [], "weights": []}
    for _ in range(reps):
        times["step"].append(_timed(step))
        times["loss"].append(statistics.median(_timed(loss_check) for _ in range(20)))
        times["weights"].append(statistics.median(_timed(weight_check) for _ in range(5)))
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = (med["loss"] + med["weights"] / log_every) / med["step"]
    return {
        "backbone": backbone,
        "batch_size": batch_size,
        "step_ms": 1e3 * med["step"],
        "loss_check_ms": 1e3 * med["loss"],
        "weight_check_ms": 1e3 * med["weights"],
        "log_every": log_every,
        "overhead_per_step": overhead,
        "reps": reps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--backbones", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(b, SETTINGS[b], args.reps, args.log_every) for b in args.backbones]
    print("| backbone | batch | step (ms) | loss check (ms) | weight check (ms) | overhead per step (weights every %d steps) |" % args.log_every)
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['batch_size']} | {r['step_ms']:.0f} | {r['loss_check_ms']:.3f} | {r['weight_check_ms']:.1f} | {100 * r['overhead_per_step']:.2f}% |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
