import numpy as np
import pytest
import torch
from PIL import Image

from xbyol.data.io import UnreadableImageError, load_image
from xbyol.explain.spec import parse_target
from xbyol.explain.targets import (
    ConceptTarget,
    DimensionTarget,
    EmbeddingSimilarityTarget,
    LinearClassTarget,
    NormTarget,
)
from xbyol.run import load_run


@pytest.fixture(scope="module")
def run(tiny_run_dir):
    return load_run(tiny_run_dir)


def test_every_kind_of_spec_builds_its_target(run, tmp_path):
    img = run.dataset("test")[3]["image"]
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / "ref.png")
    assert isinstance(parse_target("norm", run), NormTarget)
    assert isinstance(parse_target("dim:5", run), DimensionTarget)
    assert isinstance(parse_target("class:circle", run), LinearClassTarget)
    assert isinstance(parse_target("class:2", run), LinearClassTarget)
    assert isinstance(parse_target("concept:red circle", run), ConceptTarget)
    by_index = parse_target("image:3", run)
    by_path = parse_target(f"image:{tmp_path / 'ref.png'}", run)
    assert isinstance(by_index, EmbeddingSimilarityTarget)
    with torch.no_grad():
        emb = run.encode_images(img[None])
        # an image is maximally similar to itself, whichever way it was named
        assert by_index(emb).item() == pytest.approx(1.0, abs=1e-5)
        assert by_path(emb).item() == pytest.approx(1.0, abs=1e-5)


def test_class_target_scores_equal_the_probe_logits(run):
    from xbyol.explain.spec import load_probe

    lin, names = load_probe(run)
    images = torch.stack([run.dataset("test")[i]["image"] for i in range(4)])
    with torch.no_grad():
        feats = run.encode_images(images)
        target = parse_target(f"class:{names[1]}", run)
        torch.testing.assert_close(target(feats), lin(feats)[:, 1])


@pytest.mark.parametrize("spec,fragment", [
    ("", "target must be"),
    ("colour:red", "unknown target kind"),
    ("concept:", "needs a value"),
    ("dim:x", "non-negative integer"),
    ("class:unicorn", "unknown class"),
    ("image:99999", "test split has"),
])
def test_bad_specs_are_clear_errors(run, spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_target(spec, run)


def test_missing_image_file_is_named(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        parse_target(f"image:{tmp_path / 'nope.png'}", run)


def test_load_image_converts_and_crops(tmp_path):
    arr = np.zeros((20, 40), dtype=np.uint8)
    arr[:, 10:30] = 200
    Image.fromarray(arr, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png", 10)
    assert out.shape == (3, 10, 10) and out.dtype == torch.uint8
    assert torch.equal(out[0], out[1]) and int(out[0, 5, 5]) == 200
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UnreadableImageError, match=r"cannot read image .*bad\.png"):
        load_image(tmp_path / "bad.png", 10)
