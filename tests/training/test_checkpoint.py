import random

import numpy as np
import torch

from xbyol.errors import CheckpointError
from xbyol.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_atomic_save_and_weights_only_load(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"method": {"w": torch.arange(3.0)}, "step": 5, "rng": rng_state()})
    assert path.is_file() and not list(path.parent.glob("*.tmp*"))
    ck = load_checkpoint(path)
    assert ck["step"] == 5 and torch.equal(ck["method"]["w"], torch.arange(3.0))


def test_rng_state_roundtrip_restores_every_stream(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    save_checkpoint(tmp_path / "r.pt", {"method": {}, "step": 0, "rng": rng_state()})
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
