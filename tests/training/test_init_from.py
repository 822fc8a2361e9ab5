"""train.init_from: a run starts from another run's encoder (fine-tuning); bad sources get one clear error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xbyol.config import from_dict, to_dict
from xbyol.data import build_dataset
from xbyol.errors import CheckpointError
from xbyol.methods import create_method
from xbyol.training import train
from xbyol.training.checkpoint import load_checkpoint
from xbyol.training.init_from import initialise_from


def _run(cfg, name, **train_over):
    return train(dataclasses.replace(cfg, name=name, train=dataclasses.replace(cfg.train, **train_over)))


def test_fine_tuning_starts_from_the_source_encoder(tiny_cfg):
    source = _run(tiny_cfg, "source", steps=2)
    src = load_checkpoint(source / "checkpoints" / "last.pt")["method"]
    # lr 0: the optimiser leaves the parameters where init_from put them
    tuned = _run(tiny_cfg, "tuned", steps=1, lr=0.0, seed=1, init_from=str(source))
    dst = load_checkpoint(tuned / "checkpoints" / "last.pt")["method"]
    params = [k for k in src if k.startswith(("backbone.", "projector.")) and "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(src[k], dst[k]) for k in params)
    # the predictor is not part of the encoder: fresh (seed 1), so it differs from the trained source's
    pred = [k for k in src if k.startswith("predictor.") and k.endswith("weight")]
    assert pred and not all(torch.equal(src[k], dst[k]) for k in pred)
    # without init_from the same seed-1 run starts elsewhere
    fresh = load_checkpoint(_run(tiny_cfg, "fresh", steps=1, lr=0.0, seed=1) / "checkpoints" / "last.pt")["method"]
    assert not all(torch.equal(src[k], fresh[k]) for k in params)


def test_bad_sources_name_the_problem(tiny_cfg, tmp_path):
    source = _run(tiny_cfg, "source", steps=1)
    wider = to_dict(tiny_cfg)
    wider["model"]["proj_dim"] = tiny_cfg.model.proj_dim * 2
    cfg = from_dict(wider)
    method = create_method(cfg, build_dataset(cfg, "train"))
    with pytest.raises(CheckpointError, match=r"projector\..*shape"):
        initialise_from(method, source)
    with pytest.raises(CheckpointError, match="does not exist"):
        initialise_from(method, tmp_path / "nowhere.pt")
    assert initialise_from(create_method(tiny_cfg, build_dataset(tiny_cfg, "train")), source)
