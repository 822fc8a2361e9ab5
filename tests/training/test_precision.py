"""The ``auto`` settings: precision by hardware, channels_last for conv nets, and what
separate vs concatenated views mean for BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xbyol.config import DataCfg, from_dict, to_dict
from xbyol.methods.byol import BYOL, resolve_concat_views
from xbyol.training import precision as prec


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")])
def test_auto_precision_on_cpu_follows_the_bf16_instructions(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert prec.resolve_precision("auto", torch.device("cpu")) == expected
    assert prec.resolve_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_cuda_uses_fp16_without_bf16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert prec.resolve_precision("auto", torch.device("cuda", 0)) == expected


def test_auto_channels_last_is_on_for_conv_backbones_only():
    assert prec.resolve_channels_last("auto", nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())) is True
    assert prec.resolve_channels_last("auto", nn.Sequential(nn.Linear(3, 4))) is False
    assert prec.resolve_channels_last(False, nn.Conv2d(3, 4, 3)) is False


def test_auto_concat_views_is_concatenated_on_every_device():
    assert resolve_concat_views("auto") is True
    assert resolve_concat_views(False) is False
    assert resolve_concat_views(True) is True


@pytest.mark.parametrize("concat", [True, False])
def test_separate_views_keep_batchnorm_statistics_per_view(tiny_cfg, concat):
    """Separate: view 1's projection does not depend on view 2. Concatenated: it does,
    because BatchNorm normalises over both views together."""
    from xbyol.data import create_dataset

    cfg = from_dict(to_dict(tiny_cfg), {"method.concat_views": concat})
    ds = create_dataset(DataCfg(name="shapes", num_train=8, num_test=1, image_size=32, seed=0), "train")
    torch.manual_seed(0)
    method = BYOL(cfg, ds).train()
    v1, v2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    z1 = method.byol_terms(v1, v2)[0]["embed/projection"]
    z1_other = method.byol_terms(v1, v2 * 3 + 1)[0]["embed/projection"]
    assert torch.allclose(z1, z1_other, atol=1e-6) is (not concat)


def test_run_json_records_what_auto_resolved_to(tiny_cfg, monkeypatch):
    import json

    from xbyol.training import train

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cfg = from_dict(to_dict(tiny_cfg), {"train.steps": 1})
    assert cfg.train.precision == "auto" and cfg.train.channels_last == "auto"
    train(cfg)
    resolved = json.loads((cfg.run_dir / "run.json").read_text())["resolved"]
    assert resolved == {"precision": "fp32", "channels_last": True, "concat_views": True, "retain_freed_memory": True,
                        "num_workers": 0}
