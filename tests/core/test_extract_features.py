"""rundir.extract_features: order, preprocessing, dtypes, no gradients, module mode restored."""

import pytest
import torch
from torch import nn

from xbyol.augment import preprocess
from xbyol.data.base import SampleDataset
from xbyol.rundir import extract_features


class TinySet(SampleDataset):
    def __init__(self, n: int = 10, size: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return {"image": self.images[i], "label": self.labels[i], "index": i}


def test_features_in_dataset_order_of_preprocessed_images():
    ds = TinySet(n=10)
    feats, labels = extract_features(lambda x: x.mean(dim=(2, 3)), ds, batch_size=4)  # 3 batches, last one short
    assert feats.shape == (10, 3) and feats.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == ds.labels
    torch.testing.assert_close(feats, preprocess(ds.images).mean(dim=(2, 3)), rtol=0, atol=1e-6)


def test_features_are_not_normalised_and_carry_no_grad():
    ds = TinySet(n=5)
    lin = nn.Linear(3, 2)
    feats, _ = extract_features(lambda x: lin(x.mean(dim=(2, 3))) * 10, ds)
    assert not feats.requires_grad
    assert not torch.allclose(feats.norm(dim=1), torch.ones(5))


def test_module_runs_in_eval_mode_and_mode_is_restored():
    class Probe(nn.Module):
        def forward(self, x):
            assert not self.training
            return x.flatten(1)

    m = Probe().train()
    extract_features(m, TinySet(n=3), batch_size=2)
    assert m.training


def test_wrong_encoder_output_raises():
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        extract_features(lambda x: x, TinySet(n=3))
    with pytest.raises(ValueError, match="empty"):
        extract_features(lambda x: x.flatten(1), TinySet(n=0))
