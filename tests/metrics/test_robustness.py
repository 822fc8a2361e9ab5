"""Max-sensitivity on explainers with exact answers, and agreement with Captum."""

import math

import pytest
import torch

from xbyol.metrics import max_sensitivity


def identity(x):
    return x


def test_constant_explainer_has_zero_sensitivity():
    x = torch.randn(3, 3, 4, 4)
    out = max_sensitivity(lambda z: torch.ones(z.shape[0], 4, 4), x)
    assert out.tolist() == [0.0, 0.0, 0.0]


def test_identity_explainer_exact_value_for_fixed_perturbations():
    x = torch.ones(1, 1, 2, 2)  # ||x||_F = 2
    pert = torch.stack(
        [0.01 * torch.tensor([1.0, -1.0, 1.0, 1.0]), 0.02 * torch.tensor([1.0, 1.0, 1.0, 1.0])]
    ).view(1, 2, 1, 2, 2)
    # ||delta_1|| / 2 = 0.02 / 2, ||delta_2|| / 2 = 0.04 / 2 -> max 0.02
    assert max_sensitivity(identity, x, perturbations=pert).item() == pytest.approx(0.02)


def test_identity_explainer_respects_the_linf_bound():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 4, 4, generator=g) + 0.5
    radius = 0.05
    out = max_sensitivity(identity, x, radius=radius, n_samples=20)
    bound = radius * math.sqrt(x[0].numel()) / x.flatten(1).norm(dim=1)
    assert (out > 0).all() and (out <= bound).all()
    assert (out >= 0.5 * bound / math.sqrt(3)).all()  # E|U(-r,r)|^2 = r^2/3: not vanishingly small


def test_seed_determinism_and_batch_size_invariance():
    x = torch.randn(3, 3, 4, 4)

    def explain(z):
        return (z**2).sum(1)

    ref = max_sensitivity(explain, x, seed=1)
    assert torch.equal(ref, max_sensitivity(explain, x, seed=1, batch_size=4))
    assert torch.equal(ref, max_sensitivity(explain, x, seed=1, batch_size=1))
    assert not torch.equal(ref, max_sensitivity(explain, x, seed=2))


def test_agrees_with_captum_sensitivity_max_on_the_same_perturbations():
    from captum.metrics import sensitivity_max

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64)
    pert = (torch.rand(3, 5, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1) * 0.1

    def explain(z):
        return (z**2).sum(1) + z[:, 0]

    ours = max_sensitivity(explain, x, perturbations=pert)
    # Captum repeats each input n times (repeat_interleave), so sample-major noise lines up.
    def captum_explain(z):  # Captum passes the unperturbed inputs as a 1-tuple and expects one back
        return (explain(z[0]),) if isinstance(z, tuple) else explain(z)

    theirs = sensitivity_max(captum_explain, x, perturb_func=lambda inp: inp + pert.reshape(-1, 3, 4, 4), n_perturb_samples=5)
    assert torch.allclose(ours, theirs, rtol=1e-12)


def test_zero_explanation_norm_is_not_divided():
    x = torch.zeros(1, 1, 1, 2)
    pert = torch.tensor([0.3, 0.4]).view(1, 1, 1, 1, 2)
    assert max_sensitivity(identity, x, perturbations=pert).item() == pytest.approx(0.5)


def test_rejects_bad_inputs():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="explain_fn"):
        max_sensitivity(lambda z: z[:1], x)
    with pytest.raises(ValueError, match="perturbations"):
        max_sensitivity(identity, x, perturbations=torch.zeros(2, 3, 4, 4))
