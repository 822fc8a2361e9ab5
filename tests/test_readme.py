"""The README's Python example runs as written (with a tiny budget swapped in)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"```python\n(import torch\nimport xbyol\n.*?)```", text, re.S)
    assert block, "README has no Python example"
    code = block.group(1)
    original = '["train.epochs=2", "name=my_run"]'
    assert original in code
    tiny = ('["train.steps=3", "name=my_run", "data.num_train=256", "data.num_test=64", "data.batch_size=64", '
            '"model.proj_hidden=64", "model.proj_dim=32", "model.pred_hidden=64", "train.progress=false", '
            f'"out_dir={tmp_path}"]')
    monkeypatch.chdir(README.parent)
    namespace: dict = {}
    exec(compile(code.replace(original, tiny), "README.md", "exec"), namespace)
    assert tuple(namespace["heatmaps"].shape) == (8, 32, 32)
    assert (tmp_path / "my_run" / "eval.json").is_file()
