"""Linear probe on frozen features: standardise, then multinomial logistic regression (scikit-learn).

The fitted pipeline is returned so explanation targets (``class:k``) can reuse its
weights; :func:`probe_to_torch` folds the scaler into one ``nn.Linear`` whose outputs are
``pipeline.decision_function``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def _to_numpy(x: Any, name: str, ndim: int) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"linear_probe: {name} must have {ndim} dimension(s), got shape {list(arr.shape)}")
    return arr


def linear_probe(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_feats: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit ``StandardScaler -> LogisticRegression(lbfgs)`` on train features, score on test features.

    With more than two classes lbfgs fits the multinomial (softmax) model, scikit-learn's
    default.

    Args:
        train_feats: ``[N, D]`` features.
        train_labels: ``[N]`` integer labels.
        test_feats: ``[M, D]`` features.
        test_labels: ``[M]`` integer labels.
        C: inverse L2 regularisation strength.
        max_iter: lbfgs iterations.
        seed: ``random_state`` of the classifier.

    Returns:
        ``{"accuracy": test top-1 in [0, 1], "train_accuracy": ..., "classifier": fitted Pipeline}``.
    """
    from sklearn.linear_model import LogisticRegression  # heavy: imported on first use
    from sklearn.pipeline import Pipeline  # heavy: imported on first use
    from sklearn.preprocessing import StandardScaler  # heavy: imported on first use

    xtr, ytr = _to_numpy(train_feats, "train_feats", 2), _to_numpy(train_labels, "train_labels", 1)
    xte, yte = _to_numpy(test_feats, "test_feats", 2), _to_numpy(test_labels, "test_labels", 1)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise ValueError(
            f"linear_probe: features and labels differ in length (train {xtr.shape[0]} vs {ytr.shape[0]}, "
            f"test {xte.shape[0]} vs {yte.shape[0]})"
        )
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"linear_probe: train and test feature widths differ ({xtr.shape[1]} vs {xte.shape[1]})")
    if len(np.unique(ytr)) < 2:
        raise ValueError("linear_probe: the training labels hold fewer than two classes")
    if xte.shape[0] == 0:
        raise ValueError("linear_probe: no test samples")
    pipe = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("logreg", LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs", random_state=seed)),
        ]
    )
    pipe.fit(xtr.astype(np.float64), ytr)
    return {
        "accuracy": float(pipe.score(xte.astype(np.float64), yte)),
        "train_accuracy": float(pipe.score(xtr.astype(np.float64), ytr)),
        "classifier": pipe,
    }


def probe_to_torch(pipeline: Any) -> nn.Linear:
    """Fold a fitted ``StandardScaler -> LogisticRegression`` pipeline into one linear layer.

    ``W' = W / scale``, ``b' = b - W' @ mean``, so ``layer(x) == pipeline.decision_function(x)``.
    With two classes scikit-learn keeps one logit (class 1 vs class 0) and the layer has
    one output, like ``decision_function``.

    Args:
        pipeline: the ``classifier`` returned by :func:`linear_probe`.

    Returns:
        ``nn.Linear(D, C)`` (``C = 1`` for two classes), float32, on the CPU.
    """
    steps = dict(pipeline.steps) if hasattr(pipeline, "steps") else {}
    scaler, logreg = steps.get("scaler"), steps.get("logreg")
    if scaler is None or logreg is None or not hasattr(logreg, "coef_"):
        raise ValueError("probe_to_torch: expected the fitted Pipeline(scaler, logreg) returned by linear_probe")
    mean = np.zeros(logreg.coef_.shape[1]) if scaler.mean_ is None else scaler.mean_
    scale = np.ones(logreg.coef_.shape[1]) if scaler.scale_ is None else scaler.scale_
    w = logreg.coef_ / scale[None, :]  # (C, D)
    b = logreg.intercept_ - w @ mean  # (C,)
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    return layer
