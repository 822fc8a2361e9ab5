import json
import math

import pytest
import torch

from xbyol.cli import main
from xbyol.explain.evaluation import centre_baseline_hits, concept_pairs, explain_eval, format_table
from xbyol.run import load_run


def test_concept_pairs_cover_each_masked_shape_and_colour_concept():
    from xbyol.config import DataCfg
    from xbyol.data import create_dataset

    ds = create_dataset(DataCfg(name="shapes", num_test=8, image_size=32), "test")
    pairs = concept_pairs(ds, 4)
    groups = set(ds.concept_groups["shape"]) | set(ds.concept_groups["colour"])
    for i in range(4):
        present = {k for k in groups if ds[i]["masks"][k].any()}
        assert {k for j, k in pairs if j == i} == present


def test_concept_pairs_need_masks():
    from xbyol.config import DataCfg
    from xbyol.data import create_dataset

    with pytest.raises(ValueError, match="no concept masks"):
        concept_pairs(create_dataset(DataCfg(name="digits"), "test"), 4)


def test_centre_baseline_hits_only_masks_at_the_centre():
    masks = torch.zeros(3, 9, 9, dtype=torch.bool)
    masks[0, 3:6, 3:6] = True
    masks[1, 0:2, 0:2] = True
    assert centre_baseline_hits(masks).tolist()[:2] == [1.0, 0.0]
    assert math.isnan(centre_baseline_hits(masks)[2].item())  # empty mask


def test_centre_baseline_on_an_even_size_points_at_one_pixel():
    # 8 x 8: the four central pixels (3..4, 3..4) tie; their centre of mass (3.5, 3.5) is equally
    # near all four, so the first in row-major order, (3, 3), is the point
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 3, 3] = True
    masks[1, 4, 4] = True
    assert centre_baseline_hits(masks).tolist() == [1.0, 0.0]  # 8 px: the default tolerance is < 1 px


def test_explain_eval_scores_methods_and_writes_json(tiny_run_dir, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run_dir)
    result = explain_eval(load_run(run_dir), methods=["gradcam", "eigencam"], n_images=4, n_robust=2, progress=False)
    assert set(result["methods"]) == {"gradcam", "eigencam"}
    for row in result["methods"].values():
        for key in ("energy_pointing_game", "iou", "max_sensitivity", "ms_per_image"):
            assert not math.isnan(row[key]), key
        assert 0 <= row["blank_maps"] <= result["protocol"]["pairs"]
        for key in ("pointing_game", "pointing_game_pairs"):  # NaN only if every map is blank
            assert 0.0 <= row[key] <= 1.0 or row["blank_maps"] == result["protocol"]["pairs"], key
        assert 0.0 <= row["energy_pointing_game"] <= 1.0
        assert -1.0 <= row["randomization_corr"] <= 1.0 or math.isnan(row["randomization_corr"])
    saved = json.loads((run_dir / "explain_eval.json").read_text())
    assert saved["methods"].keys() == result["methods"].keys()
    assert saved["protocol"]["surrogate_samples"] == "2M + 2048"  # the LIME / KernelSHAP default the scores ran at
    assert "gradcam" in format_table(result)
    assert main(["explain-eval", str(run_dir), "-m", "gradcam", "--n-images", "2", "--n-robust", "2", "--no-progress"]) == 0
    assert "PG" in capsys.readouterr().out


def test_explain_command_writes_overlays_and_arrays(tiny_run_dir, tmp_path, capsys):
    import numpy as np

    out = tmp_path / "out"
    rc = main(["explain", str(tiny_run_dir), "--method", "gradcam", "--method", "saliency",
               "--target", "concept:red", "--indices", "0", "1", "--out", str(out)])
    assert rc == 0
    for m in ("gradcam", "saliency"):
        arr = np.load(out / f"heatmaps_{m}.npy")
        assert arr.shape == (2, 32, 32) and arr.min() >= 0.0 and arr.max() <= 1.0
        assert (out / f"test0_{m}.png").is_file() and (out / f"test1_{m}.png").is_file()
    assert "target score" in capsys.readouterr().out
    # the PNG is the overlay of the saved map, each 32 px pixel an 8 x 8 block (256 px, the default size)
    from PIL import Image

    from xbyol.explain import overlay

    image = load_run(tiny_run_dir).dataset("test")[1]["image"]
    heat = torch.from_numpy(np.load(out / "heatmaps_gradcam.npy")[1])
    png = np.asarray(Image.open(out / "test1_gradcam.png"))
    expected = overlay(image, heat, alpha=0.8, cmap="inferno", by_value=True).numpy().repeat(8, 0).repeat(8, 1)
    assert png.shape == (256, 256, 3) and np.abs(png.astype(int) - expected.astype(int)).max() <= 1


def test_explain_sample_covers_the_labels(tiny_run_dir, tmp_path, capsys):
    from xbyol.data.sampling import dataset_labels, stratified_indices

    labels = dataset_labels(load_run(tiny_run_dir).dataset("test"))
    out = tmp_path / "sample"
    assert main(["explain", str(tiny_run_dir), "--target", "norm", "--sample", "4", "--png-size", "64",
                 "--out", str(out)]) == 0
    expected = stratified_indices(labels, 4)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"test{i}_gradcam.png" for i in expected)
    assert len({labels[i] for i in expected}) == min(4, len(set(labels)))
    assert main(["explain", str(tiny_run_dir), "--target", "norm", "--sample", "0"]) == 2
    assert "--sample must be at least 1" in capsys.readouterr().err


def test_explain_command_errors(tiny_run_dir, capsys):
    assert main(["explain", str(tiny_run_dir), "--indices", "0"]) == 2
    assert "--target is required" in capsys.readouterr().err
    assert main(["explain", str(tiny_run_dir), "--target", "norm", "--method", "nope", "--indices", "0"]) == 2
    assert "unknown explainer" in capsys.readouterr().err
    # CAM cannot explain a concept text: a one-line error, not a TypeError traceback
    assert main(["explain", str(tiny_run_dir), "--target", "concept:red", "--method", "cam", "--indices", "0"]) == 2
    assert "cam explains only LinearClassTarget or DimensionTarget targets, not ConceptTarget" in capsys.readouterr().err


def test_layer_option_is_for_cam_methods_only(tiny_run_dir, tmp_path, capsys):
    rc = main(["explain", str(tiny_run_dir), "--target", "norm", "--method", "saliency", "--layer", "stages.2",
               "--indices", "0", "--out", str(tmp_path)])
    assert rc == 2 and "CAM methods only" in capsys.readouterr().err
    assert main(["explain", str(tiny_run_dir), "--target", "norm", "--method", "gradcam", "--layer", "stages.2",
                 "--indices", "0", "--out", str(tmp_path)]) == 0
