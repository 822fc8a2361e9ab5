"""End to end: a short xmodal run on shapes, retrieval evaluation and search."""

import types

import pytest
import torch

from xbyol.config import from_dict


@pytest.fixture(scope="module")
def xmodal_run(tmp_path_factory):
    from xbyol.training.trainer import train

    cfg = from_dict(
        {},
        {
            "name": "xm",
            "out_dir": str(tmp_path_factory.mktemp("runs")),
            "data.num_train": 512,
            "data.num_test": 128,
            "data.batch_size": 64,
            "model.backbone": "resnet10_16",
            "method.name": "xmodal",
            "method.tau_base": 0.9,
            "method.crossmodal.embed_dim": 32,
            "method.crossmodal.hidden": 128,
            "method.crossmodal.text_adapter_hidden": 64,
            "train.steps": 40,
            "train.optimizer": "adamw",
            "train.lr": 2e-3,
            "train.progress": False,
            "train.monitor_every": 10,
        },
    )
    torch.manual_seed(0)
    return train(cfg)


@pytest.mark.slow  # trains 40 steps (~20-40 s on 2 cores)
def test_short_xmodal_run_beats_chance_and_searches(xmodal_run, capsys):
    from xbyol.cli import main
    from xbyol.eval.retrieval_eval import retrieval_evaluator, search_captions, search_images
    from xbyol.run import load_run

    run = load_run(xmodal_run)
    res = retrieval_evaluator(run)
    for direction in ("image_to_text", "text_to_image"):
        r = res[direction]
        assert r["queries"] == 128
        # random ranking: R@10 = 0.08 +- 0.024 and median rank 64 +- ~6 over 128 queries
        assert r["R@10"] > 1.5 * r["chance_R@10"], (direction, r)
        assert r["median_rank"] < 0.75 * r["chance_median_rank"], (direction, r)
    assert res["embeddings"]["image_rank"] > 2 and res["embeddings"]["text_rank"] > 2
    header = open(xmodal_run / "metrics.csv").readline()
    assert all(k in header for k in ("image_std", "image_rank", "text_std", "text_rank"))

    ds = run.dataset("test")
    hits = search_images(run, ds.captions[0], k=3)
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["path"] is None and 0 <= hits[0]["index"] < len(ds)
    caps = search_captions(run, ds[0]["image"], k=4)
    assert len(caps) == 4 and all(c["caption"] in ds.captions for c in caps)

    assert main(["search", str(xmodal_run), "--text", "a small red star", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "a small red star" in out and "index" in out and len(out.strip().splitlines()) == 3


def test_evaluator_skips_runs_without_text_tower():
    from xbyol.eval.retrieval_eval import retrieval_evaluator

    fake = types.SimpleNamespace(method=torch.nn.Linear(2, 2))
    assert retrieval_evaluator(fake) is None


def test_search_image_errors(tmp_path):
    from xbyol.eval.retrieval_eval import load_query_image

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_query_image(tmp_path / "nope.png", 32)
    from PIL import Image

    Image.new("RGB", (64, 40), (200, 10, 10)).save(tmp_path / "red.png")
    img = load_query_image(tmp_path / "red.png", 32)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.uint8 and int(img[0, 0, 0, 0]) == 200
