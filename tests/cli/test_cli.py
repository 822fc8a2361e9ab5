import json

import pytest

from xbyol.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "datasets", "config"):
        assert cmd in out


def test_every_command_module_is_listed():
    """A module added to xbyol/commands must be added to COMMANDS, or the CLI would not offer it."""
    import pkgutil

    import xbyol.commands

    modules = {m.name for m in pkgutil.iter_modules(xbyol.commands.__path__)}
    assert sorted(c.__name__.rsplit(".", 1)[1] for c in xbyol.commands.COMMANDS) == sorted(modules)


def test_datasets_lists_every_registered_dataset(capsys):
    from xbyol.data import names

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in names():
        assert name in out
    assert {"shapes", "digits", "folder", "cifar10", "cifar100", "coco-captions"} <= set(names())


def test_config_lists_keys_and_resolves_overrides(capsys):
    assert main(["config"]) == 0
    assert "train.lr" in capsys.readouterr().out
    assert main(["config", "--set", "train.lr=0.5"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out


def test_bad_key_is_rejected_before_any_work(tmp_path, capsys):
    rc = main(["train", "--set", f"out_dir={tmp_path}", "--set", "train.optimiser=sgd"])
    err = capsys.readouterr().err
    assert rc == 2 and "train.optimiser" in err and "allowed keys" in err
    assert not any(tmp_path.iterdir())


def test_bad_value_lists_the_choices(tmp_path, capsys):
    rc = main(["train", "--set", f"out_dir={tmp_path}", "--set", "method.name=simclr"])
    err = capsys.readouterr().err
    assert rc == 2 and "method.name" in err and "byol" in err and "xbyol" in err


def test_eval_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_eval_through_the_cli(tmp_path, capsys, tiny_cfg):
    from xbyol.config import save

    cfg_path = tmp_path / "tiny.yaml"
    save(tiny_cfg, cfg_path)
    assert main(["train", "--config", str(cfg_path), "--set", "train.steps=4"]) == 0
    run_dir = tiny_cfg.run_dir
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--no-progress", "--only", "none"]) == 0
    out = capsys.readouterr().out
    assert "linear probe" in out and "random init" in out
    results = json.loads((run_dir / "eval.json").read_text())
    for side in ("trained", "random_init"):
        assert 0.0 <= results[side]["linear_probe"] <= 1.0
        assert 0.0 <= results[side]["knn"] <= 1.0
    assert (run_dir / "probe.pt").is_file()
    # resume of a finished run is a no-op that keeps the checkpoint
    assert main(["train", "--resume", str(run_dir)]) == 0
