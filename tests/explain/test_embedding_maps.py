import csv
import sys

import numpy as np
import pytest
import torch

from xbyol.explain.embedding_maps import color_values, embed_2d, group_columns, plot_map, write_map_csv


def _clusters(n=40, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g) * 0.1
    b = torch.randn(n, d, generator=g) * 0.1 + 5.0
    return torch.cat([a, b]), torch.tensor([0] * n + [1] * n)


def test_pca_matches_svd_projection():
    x, _ = _clusters()
    y = embed_2d(x, "pca")
    xc = (x - x.mean(0)).double()
    _, _, vt = torch.linalg.svd(xc, full_matrices=False)
    ref = (xc @ vt[:2].T).float()  # (N, 2)
    signs = torch.sign((y * ref).sum(0))  # principal axes are defined up to sign
    torch.testing.assert_close(y * signs, ref, rtol=1e-4, atol=1e-4)
    assert y.shape == (80, 2) and y.dtype == torch.float32


def test_tsne_shape_determinism_and_cluster_separation():
    x, lab = _clusters()
    y1 = embed_2d(x, "tsne", seed=0)
    y2 = embed_2d(x.numpy(), "tsne", seed=0)
    assert y1.shape == (80, 2)
    torch.testing.assert_close(y1, y2)
    # every point's nearest neighbour in the map is in its own cluster
    d = torch.cdist(y1, y1)
    d.fill_diagonal_(float("inf"))
    assert (lab[d.argmin(1)] == lab).all()


def test_umap_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` raise ImportError
    with pytest.raises(ImportError, match="pip install umap-learn"):
        embed_2d(torch.randn(10, 3), "umap")


def test_umap_wiring_with_a_stand_in_module(monkeypatch):
    # the real umap-learn JIT-compiles for minutes on a loaded 2-core machine; check the call instead
    import types

    calls = {}

    class FakeUMAP:
        def __init__(self, **kw):
            calls.update(kw)

        def fit_transform(self, x):
            return x[:, :2] * 2

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    x = torch.arange(30.0).view(10, 3)
    y = embed_2d(x, "umap", seed=7)
    assert calls == {"n_components": 2, "n_neighbors": 9, "random_state": 7}
    torch.testing.assert_close(y, x[:, :2] * 2)


def test_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        embed_2d(torch.randn(10, 3), "mds")
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        embed_2d(torch.randn(10), "pca")
    with pytest.raises(ValueError, match="at least 3"):
        embed_2d(torch.randn(2, 3), "pca")
    with pytest.raises(ValueError, match="NaN"):
        embed_2d(torch.tensor([[0.0, float("nan")]] * 4), "pca")


def test_colours_and_csv(tmp_path):
    names = ["circle", "square"]
    assert color_values(torch.tensor([1, 0, -1]), names) == ["square", "circle", "none"]
    concept_names = ["circle", "square", "red", "blue"]
    concepts = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    # first present concept of the group, in the group's order
    assert color_values(None, names, concepts, concept_names, [2, 3]) == ["blue", "red", "none"]
    cols = group_columns(concepts, concept_names, {"shape": [0, 1], "colour": [2, 3]})
    assert cols == {"shape": ["circle", "none", "circle"], "colour": ["blue", "red", "none"]}
    coords = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.5, -1.0]])
    path = write_map_csv(tmp_path / "map.csv", coords, ["square", "circle", "none"], indices=[5, 6, 7], extra=cols)
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == ["index", "x", "y", "label", "shape", "colour"]
    assert rows[2] == {"index": "7", "x": "4.5", "y": "-1", "label": "none", "shape": "circle", "colour": "none"}
    with pytest.raises(ValueError, match="column 'label' has 2 values"):
        write_map_csv(tmp_path / "bad.csv", coords, ["a", "b"])
    png = plot_map(coords, ["a", "b", "none"], tmp_path / "map.png", title="t")
    assert png.stat().st_size > 1000
    assert np.asarray(coords).shape == (3, 2)


def test_map_limit_samples_across_the_labels(tiny_run_dir, tmp_path, capsys):
    from xbyol.cli import main
    from xbyol.data.sampling import dataset_labels, stratified_indices
    from xbyol.run import load_run

    labels = dataset_labels(load_run(tiny_run_dir).dataset("test"))
    assert main(["map", str(tiny_run_dir), "--limit", "8", "--out", str(tmp_path), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "map_pca_label.csv")))
    expected = stratified_indices(labels, 8)
    assert [int(r["index"]) for r in rows] == expected
    assert len({labels[i] for i in expected}) == min(8, len(set(labels)))
    assert main(["map", str(tiny_run_dir), "--limit", "2"]) == 2
    assert "--limit must be at least 3" in capsys.readouterr().err


def test_a_colour_group_is_drawn_in_its_own_colours():
    from matplotlib.colors import to_rgb

    from xbyol.explain.embedding_maps import category_colours

    got = category_colours(["red", "gray", "green", "none", "red", "purple"])
    assert {k: to_rgb(v) for k, v in got.items()} == {
        "gray": to_rgb("gray"), "green": to_rgb("green"), "purple": to_rgb("purple"), "red": to_rgb("red"),
        "none": to_rgb("lightgray")}
    # not colour names: a qualitative palette, one distinct colour each
    shapes = category_colours(["circle", "square", "triangle", "none"])
    assert shapes["none"] == "lightgray" and len({tuple(shapes[c]) for c in ("circle", "square", "triangle")}) == 3
    many = category_colours([f"class {i}" for i in range(30)])
    assert len({tuple(v) for v in many.values()}) == 30


def test_same_partition_spots_a_repeated_colouring():
    from xbyol.explain.embedding_maps import same_partition

    assert same_partition(["cat", "dog", "cat"], ["a cat", "a dog", "a cat"])  # a folder's class group = its labels
    assert not same_partition(["cat", "dog", "cat"], ["red", "red", "blue"])
    assert not same_partition(["a", "a", "b"], ["x", "y", "z"])
    assert not same_partition(["a"], ["a", "b"])
