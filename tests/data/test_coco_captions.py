"""coco-captions: parsing, counted skips, clear JSON errors, split, caption choice."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from data_fixtures import make_coco

from xbyol.config import DataCfg
from xbyol.data import collate, create_dataset
from xbyol.data.coco_captions import CocoCaptionsDataset, split_images
from xbyol.data.folder import DatasetWarning


def test_samples_and_split(coco_files):
    img_dir, captions = coco_files
    cfg = DataCfg(name="coco-captions", root=str(img_dir), captions_file=str(captions), image_size=8)
    tr, te = create_dataset(cfg, "train"), create_dataset(cfg, "test")
    assert len(tr) == 8 and len(te) == 2  # 80/20 of 10 images
    assert not set(tr.image_ids) & set(te.image_ids) and len(set(tr.image_ids) | set(te.image_ids)) == 10
    s = te[0]
    k = te.image_ids[0] - 100
    assert s["label"] == -1 and s["image"].shape == (3, 8, 8) and s["image"].dtype == torch.uint8
    assert s["image"][:, 0, 0].tolist() == [k, 2 * k, 3 * k]
    assert s["captions"] == [f"image {k} caption {c}" for c in range(3)]
    assert s["caption"] == s["captions"][0]  # test split: always the first caption
    assert tr.has_captions and tr.concept_names == [] and tr.class_names == []
    batch = collate([tr[0], tr[1]])
    assert batch["label"].tolist() == [-1, -1] and len(batch["captions"]) == 2 and len(batch["captions"][0]) == 3


def test_train_caption_is_random_but_seeded(coco_files):
    img_dir, captions = coco_files

    def draws(seed: int) -> list[str]:
        ds = CocoCaptionsDataset(img_dir, captions, "train", seed=seed)
        return [ds[i % len(ds)]["caption"] for i in range(60)]

    a, b = draws(0), draws(0)
    assert a == b
    picked = {c.rsplit(" ", 1)[1] for c in a}
    assert picked == {"0", "1", "2"}  # all three captions get used
    ds = CocoCaptionsDataset(img_dir, captions, "train", seed=0)
    assert all(ds[i]["caption"] in ds[i]["captions"] for i in range(len(ds)))


def test_split_images_reference():
    tr, te = split_images(10, seed=0)
    assert len(te) == 2 and sorted(tr.tolist() + te.tolist()) == list(range(10))
    assert split_images(10, seed=0)[1].tolist() == te.tolist()
    assert len(split_images(1, seed=0)[0]) == 1  # a single image stays in train


def test_counted_skips_and_strict(tmp_path):
    img_dir, captions = make_coco(tmp_path, n_images=4, extra=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = CocoCaptionsDataset(img_dir, captions, "train", test_captions_file=captions)
    msgs = [str(w.message) for w in rec if issubclass(w.category, DatasetWarning)]
    assert len(msgs) == 1
    for part in ("skipped 2 caption(s)", "empty caption", "unknown image id 999",
                 "1 image(s) without captions", "nocap.png", "1 missing image", "missing.png",
                 "1 unreadable", "broken.png"):
        assert part in msgs[0], part
    assert len(ds) == 4 and ds.num_skipped_images == 3 and ds.num_skipped_captions == 2
    assert ds.all_captions[0] == ["image 0 caption 0", "image 0 caption 1", "image 0 caption 2"]
    with pytest.raises(ValueError, match="empty caption"):
        CocoCaptionsDataset(img_dir, captions, "train", strict=True, test_captions_file=captions)


def test_strict_missing_image(tmp_path):
    img_dir, captions = make_coco(tmp_path, n_images=3)
    (img_dir / "001.png").unlink()
    with pytest.warns(DatasetWarning, match="001.png"):
        assert len(CocoCaptionsDataset(img_dir, captions, "train", test_captions_file=captions)) == 2
    with pytest.raises(FileNotFoundError, match="001.png"):
        CocoCaptionsDataset(img_dir, captions, "train", strict=True, test_captions_file=captions)


def test_separate_test_file_and_dir(tmp_path):
    img_dir, captions = make_coco(tmp_path / "train", n_images=3)
    test_dir, test_captions = make_coco(tmp_path / "val", n_images=2)
    tr = CocoCaptionsDataset(img_dir, captions, "train", test_root=test_dir, test_captions_file=test_captions)
    te = CocoCaptionsDataset(img_dir, captions, "test", test_root=test_dir, test_captions_file=test_captions)
    assert len(tr) == 3 and len(te) == 2 and te.root == test_dir


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"images": [}', r"bad.json is not valid JSON: .*line 1"),
        ('[1, 2]', r"bad.json must be a JSON object with lists 'images' and 'annotations'"),
        ('{"images": [{"file_name": "a.png"}], "annotations": []}', r"images\[0\] needs 'id'"),
        ('{"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], "annotations": []}',
         "repeats image id 1"),
        ('{"images": [], "annotations": [{"image_id": 1}]}', r"annotations\[0\] needs 'image_id' and 'caption'"),
        ('{"images": [], "annotations": [{"image_id": 1, "caption": 5}]}',
         r"annotations\[0\].caption must be a string"),
    ],
)
def test_malformed_json_is_a_clear_error(tmp_path, text, match):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        CocoCaptionsDataset(tmp_path, tmp_path / "bad.json")


def test_missing_inputs(tmp_path, coco_files):
    img_dir, captions = coco_files
    with pytest.raises(ValueError, match="captions_file is required"):
        create_dataset(DataCfg(name="coco-captions", root=str(img_dir)))
    with pytest.raises(ValueError, match="root is required"):
        create_dataset(DataCfg(name="coco-captions", captions_file=str(captions)))
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        CocoCaptionsDataset(img_dir, tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="no_images"):
        CocoCaptionsDataset(tmp_path / "no_images", captions)
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="no usable image"):
        CocoCaptionsDataset(img_dir, tmp_path / "empty.json")
