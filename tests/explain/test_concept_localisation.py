"""Issue acceptance check: on a trained explainable-BYOL shapes model, a Grad-CAM heatmap
for ``concept:<colour>`` points at the object of that colour more often than chance."""

import pytest
import torch

from xbyol.augment import preprocess
from xbyol.config import from_dict
from xbyol.explain import explain
from xbyol.metrics import pointing_game
from xbyol.run import load_run
from xbyol.training import train


@pytest.mark.slow
def test_colour_concept_heatmaps_land_on_the_object_of_that_colour(tmp_path):
    cfg = from_dict({}, {
        "out_dir": str(tmp_path), "name": "xb", "method.name": "xbyol",
        "data.num_train": 1024, "data.num_test": 64, "data.batch_size": 64,
        "model.proj_hidden": 256, "model.proj_dim": 64, "model.pred_hidden": 256,
        "method.tau_base": 0.99, "train.steps": 120, "train.optimizer": "adamw", "train.lr": 2e-3,
        "train.weight_decay": 1e-4, "train.precision": "bf16", "train.channels_last": True,
        "train.progress": False, "train.log_every": 20,
    })
    run = load_run(train(cfg))
    test = run.dataset("test")
    colours = test.concept_groups["colour"]
    images, masks, texts = [], [], []
    for i in range(len(test)):
        s = test[i]
        for k in colours:
            if s["masks"][k].any():
                images.append(s["image"])
                masks.append(s["masks"][k])
                texts.append(test.concept_names[k])
    images, masks = torch.stack(images), torch.stack(masks)
    from xbyol.concepts.projection import concept_projection
    from xbyol.explain import ConceptTarget

    project_fn, bank = concept_projection(run)
    target = ConceptTarget(bank.embed(texts), project_fn)
    heat = explain(run.backbone, preprocess(images), target, method="gradcam")
    hits = pointing_game(heat, masks, tolerance_px=0)  # NaN for a blank (constant) map
    hits = hits.nan_to_num(0.0)  # a blank map points nowhere: count it as a miss here
    chance = masks.flatten(1).float().mean(1)  # a uniformly random point lands in the mask
    print(f"pointing game {hits.mean():.3f} vs chance {chance.mean():.3f} over {len(texts)} (image, colour) pairs")
    # one point per map (TorchRay): 0.113 vs chance 0.045 (4 of 115 maps blank); the former rule, a hit when
    # any tied maximum touched the mask, gave 0.270 on the same maps
    assert hits.mean() > 2 * chance.mean()
