"""Two CPU processes with gloo: the run completes and every rank ends with the same weights
(all parameters, online and EMA target; BatchNorm running statistics stay per process
without SyncBatchNorm, which needs CUDA)."""

import os
import socket

import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_run_completes_with_identical_weights(tmp_path, tiny_cfg):
    from xbyol.config import to_dict

    cfg = to_dict(tiny_cfg)
    cfg["train"]["steps"] = 3
    cfg["data"]["batch_size"] = 32
    cfg["model"]["sync_bn"] = True  # CPU: falls back to per-process BatchNorm with a warning
    script = tmp_path / "ddp_check.py"
    script.write_text(_SCRIPT)
    import json
    import subprocess
    import sys

    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)))
        for r in range(2)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 3
    for k in w0:
        assert torch.equal(saved["method"][k], w0[k]), k


_SCRIPT = r'''
import json, sys, torch
from pathlib import Path
torch.set_num_threads(1)
import torch.distributed as dist
from xbyol.config import from_dict
from xbyol.training import trainer

out = Path(sys.argv[1])
cfg = from_dict(json.loads((out / "cfg.json").read_text()))
captured = {}
real = trainer.create_method
def capture(cfg, ds):
    m = real(cfg, ds)
    captured["m"] = m
    return m
trainer.create_method = capture  # the name the trainer calls
trainer.train(cfg)
rank = dist.get_rank()
# parameters (online and EMA target); BatchNorm running statistics are per process on CPU
torch.save({k: v.detach().cpu() for k, v in captured["m"].named_parameters()}, out / f"rank{rank}.pt")
dist.barrier()
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """SIGINT reaches rank 1 only; the ranks agree (all-reduce) and both stop at one step,
    rank 0 saves that step, and both exit with 130."""
    import signal
    import subprocess
    import sys
    import time

    sets = {"data.num_train": 128, "data.batch_size": 16, "model.proj_hidden": 64, "model.pred_hidden": 64,
            "model.proj_dim": 16, "train.steps": 1000, "train.progress": False, "train.log_every": 1,
            "out_dir": str(tmp_path), "name": "ddp"}
    argv = [sys.executable, "-m", "xbyol", "train"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(argv, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]
    metrics = tmp_path / "ddp" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGINT)
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [130, 130], results
    # torch may warn at exit (e.g. about the process group), so find the line rather than take the last one
    lines = [next(ln for ln in err.splitlines() if ln.startswith("xbyol train: interrupted (SIGINT) at step")) for _, err in results]
    assert not any("Traceback" in err for _, err in results)
    steps = [int(line.split(" at step ")[1].split("/")[0]) for line in lines]
    assert steps[0] == steps[1]
    saved = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == steps[0]
