"""The batched (compilable) view path: same parameters as the eager path for a seed, same views up to float rounding."""

import dataclasses
import warnings

import pytest
import torch

from xbyol.augment import ByolViews, batched
from xbyol.augment.batched import ViewSpec, batched_view
from xbyol.augment.preprocessing import normalize, to_unit_float
from xbyol.config import AugCfg, ConfigError, load

# subsets on both merge paths (lerp for most of the batch, index_copy for a few) and every op present
BUSY = dataclasses.replace(AugCfg(), jitter_p=0.6, grayscale_p=0.3, solarize_p=(0.3, 0.7), blur_p=(1.0, 0.4))
ATOL = 1e-5  # float rounding of a few fused multiply-adds; a wrong parameter or row differs by far more


def images(b: int = 16, size: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


def one_op(op: str) -> AugCfg:
    """Only the crop and the op ``op`` (probability 0.5: some samples touched, some not)."""
    off = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0), normalize=False)
    on = {"jitter": dict(jitter_p=0.5), "grayscale": dict(grayscale_p=0.5), "blur": dict(blur_p=(0.5, 0.5)),
          "solarize": dict(solarize_p=(0.5, 0.5)), "crop": {}}[op]
    return dataclasses.replace(AugCfg(), **{**off, **on})


@pytest.mark.parametrize("op", ["crop", "jitter", "grayscale", "blur", "solarize"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_op_draws_the_same_parameters_and_gives_the_same_output(op, seed):
    pipe = ByolViews(one_op(op), image_size=32).view1
    assert len(pipe) == (1 if op == "crop" else 2)
    x = to_unit_float(images())
    torch.manual_seed(seed)
    eager, _ = pipe(x)
    state_after_eager = torch.get_rng_state()
    torch.manual_seed(seed)
    params = pipe.sample(x.shape[0], 40, 40)
    assert torch.equal(torch.get_rng_state(), state_after_eager)  # the same draws, in the same order
    got = batched_view(x, pipe.batched_params(params, x), pipe.spec)
    torch.testing.assert_close(got, eager, rtol=0, atol=ATOL)
    if op != "crop":  # the op really ran on some samples and left the others alone
        plain, _ = pipe.geometry.apply_params(x, params[0])
        changed = (got - plain).flatten(1).abs().amax(1) > 1e-4
        drawn = params[1]["apply"]
        assert changed.any() and not changed[~drawn].any()


@pytest.mark.parametrize("jitter", [(0.4, 0.4, 0.2, 0.1), (0.4, 0.0, 0.2, 0.0)])
def test_every_jitter_order_gives_the_eager_result(jitter):
    cfg = dataclasses.replace(one_op("jitter"), jitter=jitter, jitter_p=0.9)
    pipe = ByolViews(cfg, image_size=24).view2
    assert pipe.spec.jitter == tuple(i for i in range(4) if jitter[i] > 0)
    x = to_unit_float(images(size=24))
    orders = set()
    for seed in range(12):
        torch.manual_seed(seed)
        params = pipe.sample(x.shape[0], 24, 24)
        orders.add(tuple(params[1]["order"]))
        got = batched_view(x, pipe.batched_params(params, x), pipe.spec)
        torch.testing.assert_close(got, pipe.apply_params(x, params)[0], rtol=0, atol=ATOL)
    assert len(orders) > 4  # several orders were exercised


def test_selection_rows_are_one_hot_in_the_drawn_order():
    pipe = ByolViews(one_op("jitter"), image_size=8).view1
    jitter = pipe.photometric[0]
    q = {"apply": torch.ones(2, dtype=torch.bool), "factors": torch.ones(4, 2), "order": [2, 0, 3, 1]}
    sel = jitter.batched(q, torch.zeros(2, 3, 8, 8))["jitter_sel"]
    assert sel.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]


def _views(cfg: AugCfg, compile_: bool, size: int = 32) -> ByolViews:
    return ByolViews(dataclasses.replace(cfg, compile=compile_), image_size=size)


@pytest.mark.parametrize("size", [32, 48])  # 48 px: a 5-tap blur
def test_whole_views_batched_equal_eager_for_the_same_seed(monkeypatch, size):
    monkeypatch.setattr(batched, "_compiled", batched_view)  # the batched graph, run eagerly
    x = images(b=24, size=64)
    for seed in range(4):
        for got, want in zip(_views(BUSY, True, size)(x, seed=seed), _views(BUSY, False, size)(x, seed=seed)):
            assert got.shape == want.shape == (24, 3, size, size)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-4)  # normalised: rounding / std


def test_channels_last_images_give_channels_last_batched_views(monkeypatch):
    monkeypatch.setattr(batched, "_compiled", batched_view)
    x = images().contiguous(memory_format=torch.channels_last)
    v1, v2 = _views(BUSY, True)(x, seed=0)
    assert v1.is_contiguous(memory_format=torch.channels_last) and v2.is_contiguous(memory_format=torch.channels_last)


def test_the_graph_traces_whole_and_once_per_view_whatever_the_draws():
    # fullgraph: no graph break; one graph per view structure: the jitter order and every draw are data
    torch._dynamo.reset()
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fn = torch.compile(batched_view, backend=counting, dynamic=False, fullgraph=True)
    views = _views(dataclasses.replace(BUSY, solarize_p=(0.0, 0.5)), False)  # two structures: view 2 solarises
    x = to_unit_float(images())
    for seed in range(6):
        torch.manual_seed(seed)
        for pipe in (views.view1, views.view2):
            params = pipe.sample(x.shape[0], 40, 40)
            got = fn(x, pipe.batched_params(params, x), pipe.spec)
            want, _ = pipe.apply_params(x, params)
            torch.testing.assert_close(got, normalize(want), rtol=0, atol=1e-4)
    assert views.view1.spec != views.view2.spec and len(graphs) == 2
    torch._dynamo.reset()


def test_a_failed_compile_warns_once_and_falls_back_to_the_eager_views(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(batched, "_compiled", broken)
    views = _views(BUSY, True)
    x = images()
    with pytest.warns(RuntimeWarning, match="aug.compile: compiling the views failed .*no C\\+\\+ compiler"):
        got = views(x, seed=5)
    assert not views.compiles(x.device)
    for a, b in zip(got, _views(BUSY, False)(x, seed=5)):
        assert torch.equal(a, b)  # the fallback redraws nothing: the same views as the eager path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        views(x, seed=6)  # no second warning


def test_compile_auto_is_on_for_cuda_only_and_the_key_is_checked():
    views = ByolViews(AugCfg(), image_size=32)
    assert not views.compiles(torch.device("cpu")) and views.compiles(torch.device("cuda", 0))
    assert _views(AugCfg(), True).compiles(torch.device("cpu"))
    assert not _views(AugCfg(), False).compiles(torch.device("cuda", 0))
    assert load(None, ["aug.compile=false"]).aug.compile is False
    with pytest.raises(ConfigError, match="aug.compile"):
        load(None, ["aug.compile=sometimes"])


def test_spec_names_the_view_structure():
    views = ByolViews(AugCfg(), image_size=224)
    assert views.view1.spec == ViewSpec(224, (0, 1, 2, 3), True, 23, False, True)
    assert views.view2.spec == ViewSpec(224, (0, 1, 2, 3), True, 23, True, True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_views_on_cuda_equal_the_eager_views():
    # inductor's fused kernels against the eager CUDA ops, same parameters (drawn on the CPU)
    x = images(b=64, size=48).cuda()
    for seed in range(3):
        for got, want in zip(_views(BUSY, True)(x, seed=seed), _views(BUSY, False)(x, seed=seed)):
            torch.testing.assert_close(got, want, rtol=0, atol=5e-3)
            assert (got - want).abs().mean() < 1e-4
    assert _views(BUSY, True).compiles(x.device)
