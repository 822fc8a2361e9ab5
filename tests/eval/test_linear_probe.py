"""Linear probe: separable blobs, random labels, and the folded torch layer against scikit-learn."""

import numpy as np
import pytest
import torch

from xbyol.eval.linear_probe import linear_probe, probe_to_torch


def _blobs(n_per: int, n_classes: int, dim: int, seed: int, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 4
    y = np.repeat(np.arange(n_classes), n_per)
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    # very different feature scales, so the scaler matters in the folded layer
    return (x * np.geomspace(0.01, 100, dim) + 5).astype(np.float32), y


def test_separable_blobs_are_classified_perfectly():
    xtr, ytr = _blobs(60, 4, 10, seed=0)
    xte, yte = _blobs(20, 4, 10, seed=0)
    out = linear_probe(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte))
    assert out["accuracy"] == 1.0 and out["train_accuracy"] == 1.0
    assert list(out["classifier"].named_steps) == ["scaler", "logreg"]


def test_random_labels_give_chance_accuracy():
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 400)
    acc = linear_probe(xtr, ytr, xte, yte)["accuracy"]
    assert 0.15 < acc < 0.35  # chance = 0.25


@pytest.mark.parametrize("n_classes", [2, 5])
def test_folded_layer_matches_decision_function(n_classes):
    xtr, ytr = _blobs(40, n_classes, 12, seed=2, spread=3.0)
    xte, _ = _blobs(10, n_classes, 12, seed=3, spread=3.0)
    pipe = linear_probe(xtr, ytr, xte, np.zeros(len(xte), dtype=int), C=0.5)["classifier"]
    layer = probe_to_torch(pipe)
    assert isinstance(layer, torch.nn.Linear) and layer.in_features == 12
    ref = pipe.decision_function(xte.astype(np.float64))  # (M, C) or (M,) for two classes
    ref = ref.reshape(len(xte), -1)
    assert layer.out_features == ref.shape[1] == (1 if n_classes == 2 else n_classes)
    with torch.no_grad():
        got = layer(torch.from_numpy(xte)).double().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    pred = (got[:, 0] > 0).astype(int) if n_classes == 2 else got.argmax(1)
    assert (pred == pipe.predict(xte)).all()


def test_bad_inputs_raise():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(x, np.array([0, 1, 0]), x, np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="fewer than two classes"):
        linear_probe(x, np.zeros(4, dtype=int), x, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="widths differ"):
        linear_probe(x, np.array([0, 1, 0, 1]), np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="Pipeline"):
        probe_to_torch(object())
