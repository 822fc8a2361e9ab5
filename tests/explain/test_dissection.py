import csv
import json

import pytest
import torch
from torch import nn

from xbyol.data.base import SampleDataset
from xbyol.explain.dissection import (
    count_detectors,
    dissect,
    iou_from_tallies,
    tally_iou,
    unit_masks,
)
from xbyol.explain.dissection_figure import plot_top_units


class MaskImages(SampleDataset):
    """Images whose channel c is 255 on concept c's mask: a model that reads the pixels copies the masks."""

    concept_names = ["red", "green", "blue", "square"]
    concept_groups = {"colour": [0, 1, 2], "shape": [3]}
    mask_concepts = [0, 1, 2]  # "square" is not annotated

    def __init__(self, n: int = 6, size: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.masks = torch.zeros(n, 4, size, size, dtype=torch.bool)
        for i in range(n):
            for c in range(3):
                if (i + c) % 3:  # some images lack a concept
                    y, x = torch.randint(0, size - 3, (2,), generator=g).tolist()
                    self.masks[i, c, y : y + 3, x : x + 2] = True
        self.image_size = size

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int):
        img = (self.masks[i, :3].to(torch.uint8) * 255)  # (3, H, W)
        return {"image": img, "label": 0, "masks": self.masks[i], "index": i}


class PixelNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feature_layer = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_layer(x)


def test_unit_masks_bilinear_by_hand():
    a = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    # align_corners=False: output columns sample input x = 0, 0.25, 0.75, 1 -> 0, .25, .75, 1
    m = unit_masks(a, torch.tensor([0.5]), (4, 4))
    assert m[0, 0].tolist() == [[False, False, True, True]] * 4
    with pytest.raises(ValueError, match="thresholds"):
        unit_masks(a, torch.tensor([0.5, 0.1]), (4, 4))


def test_iou_is_accumulated_over_the_dataset_not_averaged():
    units = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    concepts = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    units[0, 0, 0, :2] = True
    concepts[0, 0, 0, :2] = True  # image 0: IoU 1 (2 px)
    concepts[1, 0, 2:, 1:4] = True  # image 1: unit silent, concept 6 px: IoU 0
    inter, ua, ca = tally_iou(units, concepts)
    assert inter.tolist() == [[2.0]] and ua.tolist() == [[2.0]] and ca.tolist() == [6.0 + 2.0]
    assert iou_from_tallies(inter, ua, ca).item() == pytest.approx(2 / 8)  # not (1 + 0) / 2
    # a unit's area counts only where the concept is annotated
    units[1, 0] = True  # 16 px on image 1
    _, ua2, _ = tally_iou(units, concepts, annotated=torch.tensor([[True], [False]]))
    assert ua2.item() == 2.0
    # chunking over units gives the same numbers
    u = torch.rand(3, 5, 6, 6) > 0.5
    c = torch.rand(3, 4, 6, 6) > 0.7
    full = tally_iou(u, c)
    chunked = tally_iou(u, c, chunk=3 * 36)  # one unit at a time
    for x, y in zip(full, chunked):
        assert torch.equal(x, y)
    assert iou_from_tallies(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1)).item() == 0.0


def test_count_detectors_paper_and_release_rules():
    iou = torch.tensor(
        [
            [0.10, 0.05, 0.02, 0.00],  # best: concept 0 (colour)
            [0.08, 0.00, 0.06, 0.00],  # best: concept 0 again; within shape: concept 2 (0.06)
            [0.00, 0.03, 0.05, 0.09],  # best: concept 3 (shape)
            [0.01, 0.02, 0.03, 0.01],  # no detector
        ]
    )
    s = count_detectors(iou, ["colour", "colour", "shape", "shape"], 0.04)
    assert s["detectors"] == 3
    assert s["detectors_per_group"] == {"colour": 2, "shape": 1}
    assert s["unique_paper"] == 2 and s["unique_paper_per_group"] == {"colour": 1, "shape": 1}
    # release: colour {0}; shape {2 (unit 1), 3 (unit 2)}
    assert s["unique_release"] == 3 and s["unique_release_per_group"] == {"colour": 1, "shape": 2}
    assert count_detectors(iou, ["colour", "colour", "shape", "shape"], 0.2)["detectors"] == 0
    with pytest.raises(ValueError, match="groups"):
        count_detectors(iou, ["colour"], 0.04)


def test_units_that_copy_masks_score_iou_one(tmp_path, monkeypatch):
    ds = MaskImages()
    # each channel is on for 6/64 of the pixels in 4 of 6 images: q = 0.2 puts the threshold on the 'off' level
    res = dissect(PixelNet(), ds, quantile=0.2, iou_threshold=0.04, batch_size=4, progress=False)
    assert res.concept_names == ["red", "green", "blue"] and res.concept_groups == ["colour"] * 3
    torch.testing.assert_close(res.iou.diagonal(), torch.ones(3, dtype=torch.float64))
    assert (res.iou - torch.diag(res.iou.diagonal())).max() < 1
    assert res.summary["detectors"] == 3 and res.summary["unique_paper"] == 3 and res.summary["unique_release"] == 3
    assert res.exact_thresholds
    # thresholds are the exact quantile of all positions (the first 'off' level)
    acts = torch.stack([ds[i]["image"] for i in range(len(ds))]).float() / 255
    from xbyol.augment import normalize

    ref = torch.quantile(normalize(acts).permute(1, 0, 2, 3).flatten(1).double(), 0.8, dim=1)
    torch.testing.assert_close(res.thresholds, ref)
    # top image of each unit contains its concept
    for k in range(3):
        assert ds.masks[res.top_images[k, 0], k].any()
    # neither the batch size nor chunking over units changes the tallies
    res1 = dissect(PixelNet(), ds, quantile=0.2, batch_size=6, progress=False)
    torch.testing.assert_close(res1.iou, res.iou, rtol=0, atol=0)
    import xbyol.explain.dissection as dissection_mod

    monkeypatch.setattr(dissection_mod, "CHUNK_PIXELS", 4 * 64)  # one unit at a time
    res2 = dissect(PixelNet(), ds, quantile=0.2, batch_size=4, progress=False)
    torch.testing.assert_close(res2.iou, res.iou, rtol=0, atol=0)

    paths = res.write(tmp_path / "d")
    rows = list(csv.DictReader(open(paths["iou"])))
    assert list(rows[0]) == ["unit", "concept", "group", "iou"] and len(rows) == 3 * 3
    assert rows[0] == {"unit": "0", "concept": "red", "group": "colour", "iou": "1.000000"}
    units = list(csv.DictReader(open(paths["units"])))
    assert [u["concept"] for u in units] == ["red", "green", "blue"] and units[0]["detector"] == "True"
    summary = json.loads(paths["summary"].read_text())
    assert summary["detectors"] == 3 and summary["quantile"] == 0.2
    png = plot_top_units(res, PixelNet(), ds, tmp_path / "d" / "top.png", n_units=2, n_images=3)
    assert png.stat().st_size > 1000


def test_dissect_resnet_layer_by_name(tmp_path):
    from xbyol.data.shapes import ShapesDataset
    from xbyol.models import create_backbone

    torch.manual_seed(0)
    ds = ShapesDataset("test", num=12, image_size=32)
    net = create_backbone("resnet10_16")
    res = dissect(net, ds, layer="stages.2", batch_size=8, progress=False)
    assert res.layer == "stages.2"
    assert res.iou.shape == (64, len(ds.mask_concepts)) and (res.iou >= 0).all() and (res.iou <= 1).all()
    assert res.top_images.shape == (64, 8)
    assert set(res.summary["unique_release_per_group"]) == set(ds.concept_groups)
    assert net.training  # mode restored
    with pytest.raises(ValueError, match="not a submodule"):
        dissect(net, ds, layer="stages.9", progress=False)


@pytest.mark.slow
def test_commands_end_to_end(tmp_path, tiny_cfg, capsys):
    """dissect (with its random twin), maximize and map on one tiny trained run, through the CLI."""
    import dataclasses

    from xbyol.cli import main
    from xbyol.training import train

    cfg = dataclasses.replace(
        tiny_cfg,
        data=dataclasses.replace(tiny_cfg.data, num_train=64, num_test=48, batch_size=32),
        train=dataclasses.replace(tiny_cfg.train, steps=2),
    )
    run_dir = train(cfg)
    assert main(["dissect", str(run_dir), "--baseline", "random", "--no-progress", "--top-units", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained" in out and "random" in out and "unique (release)" in out
    d = run_dir / "dissect" / "stages.3"
    for sub in (d, d / "random"):
        assert {p.name for p in sub.iterdir()} >= {"iou.csv", "units.csv", "summary.json", "top_units.png"}
    units = list(csv.DictReader(open(d / "units.csv")))
    assert len(units) == 128 and list(units[0]) == ["unit", "concept", "group", "iou", "detector", "threshold"]
    assert main(["dissect", str(run_dir), "--layer", "nope", "--no-progress"]) == 2
    assert "not a submodule" in capsys.readouterr().err

    png = tmp_path / "am.png"
    assert main(["maximize", str(run_dir), "--unit", "stages.2:3", "--unit", "5", "--n", "2", "--steps", "3", "--out", str(png)]) == 0
    assert "stages.2:3: scores" in capsys.readouterr().out and png.stat().st_size > 500
    assert main(["maximize", str(run_dir)]) == 2
    assert "--unit" in capsys.readouterr().err

    assert main(["map", str(run_dir), "--method", "pca", "--color-by", "concept", "--group", "colour", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(run_dir / "maps" / "map_pca_colour.csv")))
    assert len(rows) == 48 and list(rows[0])[:4] == ["index", "x", "y", "label"] and "colour" in rows[0]
    assert main(["map", str(run_dir), "--color-by", "concept", "--group", "flavour"]) == 2
    assert "unknown concept group" in capsys.readouterr().err
