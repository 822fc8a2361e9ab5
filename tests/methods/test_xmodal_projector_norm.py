"""``method.crossmodal.projector_norm``: batch / layer / none, and the old boolean ``projector_bn``."""

import pytest
import torch

from xbyol.config import ConfigError, from_dict
from xbyol.methods.xmodal import projector_output_norm, shared_space_projector
from xbyol.rundir import RunDir


@pytest.mark.parametrize("kind", ["layer", "none"])
def test_batch_independent_norms_give_one_sample_the_same_embedding_in_any_batch(kind):
    torch.manual_seed(0)
    norm = projector_output_norm(kind, 8).train()
    x = torch.randn(6, 8)
    others = torch.randn(5, 8) * 3 + 1
    alone = norm(x[:1].expand(2, 8))[0]  # a batch of two copies of sample 0
    in_batch = norm(x)[0]
    in_other_batch = norm(torch.cat([x[:1], others]))[0]
    torch.testing.assert_close(in_batch, alone)
    torch.testing.assert_close(in_other_batch, alone)


def test_batch_norm_makes_one_sample_depend_on_the_others():
    torch.manual_seed(0)
    norm = projector_output_norm("batch", 8).train()
    x = torch.randn(6, 8)
    others = torch.randn(5, 8) * 3 + 1
    a, b = norm(x)[0], norm(torch.cat([x[:1], others]))[0]
    assert (a - b).abs().max() > 0.1


def test_layer_norm_reference_values():
    # [1, 2, 3, 6]: mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5
    out = projector_output_norm("layer", 4)(torch.tensor([[1.0, 2.0, 3.0, 6.0]]))
    expected = torch.tensor([[-2.0, -1.0, 0.0, 3.0]]) / (3.5 + 1e-5) ** 0.5
    torch.testing.assert_close(out, expected)
    assert list(projector_output_norm("layer", 4).parameters()) == []  # non-affine: nothing learnt


def test_projector_state_dict_keys_match_the_old_boolean_layout():
    # runs saved with projector_bn false had a bare head, with true a Sequential(head, BatchNorm1d)
    assert "net.0.weight" in shared_space_projector(4, 8, 3, "none").state_dict()
    batch_keys = set(shared_space_projector(4, 8, 3, "batch").state_dict())
    assert {"0.net.0.weight", "1.running_mean", "1.running_var"} <= batch_keys
    assert set(shared_space_projector(4, 8, 3, "layer").state_dict()) == {k for k in batch_keys if k.startswith("0.")}


@pytest.mark.parametrize(("old", "new"), [(True, "batch"), (False, "none")])
def test_old_projector_bn_key_maps_onto_projector_norm(old, new):
    from_file = from_dict({"method": {"crossmodal": {"projector_bn": old}}})
    assert from_file.method.crossmodal.projector_norm == new
    from_override = from_dict({}, [f"method.crossmodal.projector_bn={str(old).lower()}"])
    assert from_override.method.crossmodal.projector_norm == new
    # a file with the old key and an override of the new one: the override wins
    both = from_dict({"method": {"crossmodal": {"projector_bn": old}}}, {"method.crossmodal.projector_norm": "layer"})
    assert both.method.crossmodal.projector_norm == "layer"


def test_bad_old_and_new_values_name_the_key():
    with pytest.raises(ConfigError, match="method.crossmodal.projector_bn: expected true or false"):
        from_dict({}, ["method.crossmodal.projector_bn=batch"])
    with pytest.raises(ConfigError, match="method.crossmodal.projector_norm: 'group' is not allowed"):
        from_dict({}, ["method.crossmodal.projector_norm=group"])
    with pytest.raises(ConfigError, match="disagree"):
        from_dict({"method": {"crossmodal": {"projector_bn": False, "projector_norm": "batch"}}})


def test_run_dir_saved_with_projector_bn_false_still_loads(tmp_path):
    from xbyol.run import load_run
    from xbyol.training.trainer import train

    cfg = from_dict({}, {
        "name": "old", "out_dir": str(tmp_path), "data.num_train": 32, "data.num_test": 16, "data.batch_size": 16,
        "model.backbone": "resnet10_16", "method.name": "xmodal", "method.crossmodal.embed_dim": 8,
        "method.crossmodal.hidden": 16, "method.crossmodal.text_adapter_hidden": 16,
        "method.crossmodal.projector_norm": "none", "train.steps": 1, "train.progress": False,
    })
    run_dir = train(cfg)
    text = (run_dir / "config.yaml").read_text()
    assert "  projector_norm: none\n" in text
    (run_dir / "config.yaml").write_text(text.replace("  projector_norm: none\n", "  projector_bn: false\n"))
    assert RunDir(run_dir).read_config().method.crossmodal.projector_norm == "none"
    run = load_run(run_dir)  # the checkpoint's weights load into the rebuilt bare projector heads
    assert "net.0.weight" in run.method.image_projector.state_dict()
