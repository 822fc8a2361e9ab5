"""Training on CUDA: bf16 and fp16 (with GradScaler) steps, channels_last, and a checkpoint
written on CUDA that loads on a machine without CUDA. Skipped without a CUDA device;
``benchmarks/gpu_check.py`` runs them (``pytest -m cuda``)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import pytest
import torch

from xbyol.config import from_dict, to_dict
from xbyol.training import train
from xbyol.training.checkpoint import first_bad_tensor, load_checkpoint

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

DEVICE = "cuda:0"


def _cfg(tiny_cfg, **overrides):
    return from_dict(to_dict(tiny_cfg), {"train.device": DEVICE, **overrides})


def _losses(run_dir) -> list[float]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return [float(r["loss"]) for r in rows]


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["method"]


def test_bf16_steps_train_on_cuda(tiny_cfg):
    cfg = _cfg(tiny_cfg, name="bf16", **{"train.precision": "bf16", "train.steps": 3})
    run_dir = train(cfg)
    losses = _losses(run_dir)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    w = _weights(run_dir)
    # autocast computes in bf16 but the parameters and the checkpoint stay fp32
    assert all(v.dtype == torch.float32 for k, v in w.items() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())


def test_fp16_with_grad_scaler_stays_finite_on_cuda(tiny_cfg, monkeypatch):
    scaler_updates = []
    real_update = torch.amp.GradScaler.update

    def counted(self, new_scale=None):
        scaler_updates.append(self.get_scale())
        return real_update(self, new_scale)

    monkeypatch.setattr(torch.amp.GradScaler, "update", counted)
    cfg = _cfg(tiny_cfg, name="fp16", **{"train.precision": "fp16", "train.steps": 6})
    run_dir = train(cfg)
    losses = _losses(run_dir)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert len(scaler_updates) == 6, "the trainer steps through a GradScaler in fp16"
    assert all(math.isfinite(s) and s > 0 for s in scaler_updates)
    w = _weights(run_dir)
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())


def test_channels_last_gives_the_same_losses_on_cuda(tiny_cfg):
    """Same seed, data and views: channels_last changes the memory layout, not the numbers (up to rounding)."""
    common = {"train.precision": "fp32", "train.steps": 2}
    dense = train(_cfg(tiny_cfg, name="dense", **common, **{"train.channels_last": False}))
    cl = train(_cfg(tiny_cfg, name="cl", **common, **{"train.channels_last": True}))
    # TF32 convolutions (PyTorch's CUDA default) round differently per layout: ~1e-3 relative
    assert _losses(cl) == pytest.approx(_losses(dense), rel=1e-2)


def test_train_device_cuda_without_an_index_trains(tiny_cfg):
    """``train.device: cuda`` (as users write it) must work, not only ``cuda:0`` or ``auto``."""
    run_dir = train(from_dict(to_dict(tiny_cfg), {"name": "plain_cuda", "train.device": "cuda", "train.steps": 1}))
    assert len(_losses(run_dir)) == 1


def test_resume_on_cuda_continues_to_the_last_step(tiny_cfg):
    """Stop half-way and resume on the GPU: the checkpoint's RNG states and optimiser state must load there."""
    cfg = _cfg(tiny_cfg, name="resume", **{"train.precision": "bf16", "train.steps": 4})
    train(cfg, stop_after=2)
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["step"] == 2
    train(cfg, resume=True)
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["step"] == 4
    losses = _losses(cfg.run_dir)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)


_LOAD_ON_CPU = r"""
import sys, torch
from xbyol.run import load_run
from xbyol.training.checkpoint import first_bad_tensor, load_checkpoint
assert not torch.cuda.is_available(), "CUDA must be hidden for this check"
ckpt = load_checkpoint(sys.argv[1] + "/checkpoints/last.pt")
devices = {v.device.type for v in ckpt["method"].values()}
assert devices == {"cpu"}, devices
run = load_run(sys.argv[1], device="cpu")
x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
z = run.encode_images(x)
assert z.device.type == "cpu" and z.shape[0] == 4 and torch.isfinite(z).all()
print("loaded", run.step)
"""


def test_checkpoint_written_on_cuda_loads_where_there_is_no_cuda(tiny_cfg):
    run_dir = train(_cfg(tiny_cfg, name="on_cuda", **{"train.precision": "bf16", "train.steps": 2}))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", _LOAD_ON_CPU, str(run_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded 2"


def test_first_bad_tensor_takes_tensors_on_the_cpu_and_the_gpu_together():
    # AdamW on CUDA keeps its `step` counters on the CPU beside moments on the GPU; every checkpoint
    # save checks both kinds in one call (the first GPU run crashed here: a foreach kernel takes one device)
    step = torch.tensor(3.0)
    moment = torch.tensor([1.0, -4.0], device=DEVICE)
    assert first_bad_tensor([("step", step), ("moment", moment)]) is None
    assert first_bad_tensor([("step", step), ("moment", moment)], max_abs=3.5) == ("moment", 4.0)
    assert first_bad_tensor([("moment", moment), ("step", torch.tensor(float("nan")))])[0] == "step"
    assert first_bad_tensor([("bad", torch.tensor([float("inf")], device=DEVICE)), ("step", step)]) == ("bad", float("inf"))
