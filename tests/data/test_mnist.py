"""mnist / fashion-mnist: official split from tiny IDX files, resizing, captions, file errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import make_idx

from xbyol.config import DataCfg
from xbyol.data import create_dataset, mnist
from xbyol.data.idx import write_idx


@pytest.mark.parametrize("gz", [True, False])
def test_reads_official_split_as_three_channels(tmp_path, gz):
    root = make_idx(tmp_path / "fm", n_train=10, n_test=4, side=6, gz=gz)
    cfg = DataCfg(name="fashion-mnist", root=str(root), image_size=6)
    tr, te = create_dataset(cfg, "train"), create_dataset(cfg, "test")
    assert len(tr) == 10 and len(te) == 4
    s = tr[9]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 6, 6)
    expected_row = torch.arange(6, dtype=torch.uint8) + 90  # image 9: 9 * 10 + column
    assert torch.equal(s["image"], expected_row.expand(3, 6, 6))
    assert s["label"] == 9 and s["caption"] == "a photo of an ankle boot"
    assert s["concepts"].nonzero().flatten().tolist() == [9]
    assert tr[0]["caption"] == "a photo of a t-shirt/top" and tr[1]["caption"] == "a photo of a trouser"
    assert te[3]["image"][0, 0, 0] == 30 and te[3]["label"] == 3 and te[3]["caption"] == "a photo of a dress"
    assert tr.class_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                              "Sneaker", "Bag", "Ankle boot"]
    assert tr.concept_names == tr.class_names and tr.concept_groups == {"class": list(range(10))}


def test_mnist_names_and_captions(tmp_path):
    ds = create_dataset(DataCfg(name="mnist", root=str(make_idx(tmp_path / "m")), image_size=6), "test")
    assert ds.class_names[7] == "seven" and ds[3]["caption"] == "a handwritten digit three"


def test_resized_once_to_image_size(tmp_path):
    root = make_idx(tmp_path / "fm", side=4)
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.full((4, 4, 4), 77, dtype=np.uint8))
    ds = create_dataset(DataCfg(name="fashion-mnist", root=str(root), image_size=12), "test")
    assert ds.images.shape == (4, 1, 12, 12)
    assert ds[2]["image"].shape == (3, 12, 12) and ds[2]["image"].eq(77).all()  # a constant image stays constant
    ramp = create_dataset(DataCfg(name="fashion-mnist", root=str(root), image_size=8), "train")[1]["image"][0]
    assert ramp[0, 0] < ramp[0, -1] and torch.equal(ramp[0], ramp[-1])  # the left-to-right ramp survives


def test_plain_file_wins_over_gz_when_both_exist(tmp_path):
    root = make_idx(tmp_path / "fm", n_test=4)
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((4, 6, 6), dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", np.full(4, 5, dtype=np.uint8))
    ds = create_dataset(DataCfg(name="fashion-mnist", root=str(root), image_size=6), "test")
    assert ds.labels.tolist() == [5, 5, 5, 5] and not ds.images.any()


def test_count_mismatch_names_both_files(tmp_path):
    root = make_idx(tmp_path / "fm", n_train=10)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz holds 10 images but .*train-labels-idx1-ubyte.gz holds 9 labels"):
        create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "train")


def test_bad_files_name_the_file(tmp_path):
    root = make_idx(tmp_path / "fm")
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x04\x01")  # plain, 1 of 4 labels
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: truncated"):
        create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "test")
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"not an idx file at all")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: not an IDX file"):
        create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "train")
    write_idx(root / "train-images-idx3-ubyte.gz", np.zeros((10, 6), dtype=np.uint8))  # 2-D: not images
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: expected uint8 images \[N, H, W\]"):
        create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "train")
    write_idx(root / "train-images-idx3-ubyte.gz", np.zeros((10, 6, 6), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte.gz", np.full(10, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: label 10 outside 0..9"):
        create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "train")


def test_missing_file_says_what_is_expected_and_how_to_get_it(tmp_path):
    root = make_idx(tmp_path / "fm")
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"fashion-mnist: .*fm lacks t10k-images-idx3-ubyte\[.gz\]; .*apt-get install dataset-fashion-mnist"):
        create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "test")
    assert len(create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "train")) == 10  # the other split still reads


def test_default_root_is_the_debian_folder_when_it_exists(tmp_path, monkeypatch):
    debian = make_idx(tmp_path / "usr_share_datasets_fashion-mnist", n_train=3)
    monkeypatch.setattr(mnist, "FASHION_MNIST_DEFAULT_ROOT", debian)
    ds = create_dataset(DataCfg(name="fashion-mnist", image_size=6), "train")
    assert len(ds) == 3 and ds.root == debian
    with pytest.raises(ValueError, match="mnist: root is required"):  # MNIST has no default folder
        create_dataset(DataCfg(name="mnist"), "train")


def test_no_default_root_tells_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FASHION_MNIST_DEFAULT_ROOT", tmp_path / "not_installed")
    with pytest.raises(ValueError, match=r"fashion-mnist: root is required \(data.root\): .*apt-get install dataset-fashion-mnist") as e:
        create_dataset(DataCfg(name="fashion-mnist"), "test")
    assert "\n" not in str(e.value)


def test_cli_reports_a_bad_file_in_one_line(tmp_path, capsys):
    from xbyol.cli import main

    root = make_idx(tmp_path / "fm")
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"\x00\x00\x08\x03\x00")
    rc = main(["train", "--set", "data.name=fashion-mnist", "--set", f"data.root={root}", "--set", f"out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "train-images-idx3-ubyte.gz: truncated" in err


def _train_cli(root, out, method: str, tiny_overrides: dict) -> str:
    from xbyol.cli import main

    sets = dict(tiny_overrides, **{"data.name": "fashion-mnist", "data.root": str(root), "data.image_size": 16,
                                   "data.batch_size": 10, "train.steps": 2, "method.name": method,
                                   "out_dir": str(out), "name": method})
    assert main(["train", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]) == 0
    return str(out / method)


@pytest.mark.slow
def test_concepts_and_search_work_on_fashion_mnist(tmp_path, capsys, tiny_overrides):
    from xbyol.cli import main

    root = make_idx(tmp_path / "fm", n_train=20, n_test=10, side=28)
    run = _train_cli(root, tmp_path / "runs", "xbyol", tiny_overrides)
    capsys.readouterr()
    assert main(["concepts", run, "--indices", "9", "--top-k", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "test[9] (a photo of an ankle boot)"
    assert sorted(line.split(None, 1)[1] for line in lines[1:]) == sorted(mnist.FASHION_CLASSES)  # the bank: class names

    run = _train_cli(root, tmp_path / "runs", "clip", tiny_overrides)
    capsys.readouterr()
    assert main(["search", run, "--text", "a photo of a bag", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "top 3 test images for 'a photo of a bag':" and len(out) == 4
    assert all(line.rstrip().endswith("]") and "index" in line for line in out[1:])
