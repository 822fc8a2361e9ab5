import pytest

from xbyol.config import Config, ConfigError, describe, dump, from_dict, load, parse_override


def test_defaults_are_the_paper_values():
    cfg = Config()
    assert cfg.method.tau_base == 0.996
    assert (cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden) == (4096, 256, 4096)
    assert cfg.aug.jitter == (0.4, 0.4, 0.2, 0.1)
    assert cfg.aug.blur_p == (1.0, 0.1) and cfg.aug.solarize_p == (0.0, 0.2)


def test_overrides_are_parsed_as_yaml():
    cfg = from_dict({}, ["train.lr=0.05", "train.channels_last=true", "aug.blur_p=[0.5, 0.0]", "train.steps=7"])
    assert cfg.train.lr == 0.05 and cfg.train.channels_last is True
    assert cfg.aug.blur_p == (0.5, 0.0) and cfg.train.steps == 7


def test_unknown_key_is_named_with_allowed_keys():
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"lrr": 0.1}})
    assert "train.lrr" in str(e.value) and "lr" in str(e.value) and "weight_decay" in str(e.value)


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError) as e:
        from_dict({}, ["train.optimizer=adam"])
    msg = str(e.value)
    assert "train.optimizer" in msg and "lars" in msg and "adamw" in msg


@pytest.mark.parametrize("override,fragment", [
    ("train.lr=fast", "expected a number"),
    ("train.steps=1.5", "expected an integer"),
    ("aug.flip_p=1.5", "above the maximum"),
    ("data.batch_size=0", "below the minimum"),
    ("aug.jitter=[0.4, 0.4]", "list of 4"),
    ("train.channels_last=maybe", "choose one of auto, True, False"),
    ("train.progress=maybe", "true or false"),
    ("nonsense", "key=value"),
])
def test_bad_values_are_rejected_with_the_key(override, fragment):
    with pytest.raises(ConfigError) as e:
        from_dict({}, [override])
    assert fragment in str(e.value)


def test_yaml_roundtrip(tmp_path):
    cfg = from_dict({}, ["train.lr=0.3", "method.name=xbyol", "method.semantic.weight=0.5"])
    p = tmp_path / "c.yaml"
    p.write_text(dump(cfg))
    assert load(p) == cfg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)


def test_parse_override_and_describe():
    assert parse_override("a.b=3") == ("a.b", 3)
    keys = [k for k, _, _ in describe()]
    assert "train.lr" in keys and "method.semantic.loss" in keys and "data.name" in keys


def test_shipped_presets_are_valid():
    from pathlib import Path

    presets = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert presets, "configs/ has no presets"
    for p in presets:
        load(p)


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 parses "5e-3" as a string; a float field still accepts it
    assert from_dict({}, ["train.lr=5e-3"]).train.lr == 0.005
    assert from_dict({"train": {"weight_decay": "1e-5"}}).train.weight_decay == 1e-5
