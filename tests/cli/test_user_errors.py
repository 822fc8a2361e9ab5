"""Bad input ends in one line that names the file or key, exit code 2, no traceback;
``--debug`` lets the traceback through."""

from __future__ import annotations

import argparse
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xbyol.cli import main


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"xbyol {command}: error: "), err[0]
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def run_copy(tiny_run_dir, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    return run


def _bomb_png(path: Path, side: int = 40_000) -> Path:
    """A PNG whose header claims side x side pixels (1.6 gigapixels) in a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("command", ["eval", "explain", "train"])
def test_truncated_checkpoint_is_named(run_copy, capsys, command):
    ckpt = run_copy / "checkpoints" / "last.pt"
    _truncate(ckpt)
    if command == "train":  # a resume falls back to prev.pt; break that one too
        _truncate(run_copy / "checkpoints" / "prev.pt")
    argv = {
        "eval": ["eval", str(run_copy), "--no-progress"],
        "explain": ["explain", str(run_copy), "--target", "norm", "--indices", "0", "--out", str(run_copy / "x")],
        "train": ["train", "--resume", str(run_copy)],
    }[command]
    assert main(argv) == 2
    line = _one_error_line(capsys, command)
    assert str(ckpt) in line and "truncated or corrupt" in line


def test_checkpoint_with_pickled_objects_is_refused_as_unsafe(run_copy, capsys):
    ckpt = run_copy / "checkpoints" / "last.pt"
    blob = torch.load(ckpt, weights_only=True)
    blob["extra"] = argparse.Namespace(x=1)  # any class outside the weights-only allow-list
    torch.save(blob, ckpt)
    assert main(["eval", str(run_copy), "--no-progress"]) == 2
    line = _one_error_line(capsys, "eval")
    assert str(ckpt) in line and "not a safe xbyol checkpoint" in line


def test_checkpoint_with_inf_weights_is_refused_by_explain(run_copy, capsys):
    ckpt = run_copy / "checkpoints" / "last.pt"
    blob = torch.load(ckpt, weights_only=True)
    key = next(k for k in blob["method"] if k.endswith("weight"))
    blob["method"][key] = torch.full_like(blob["method"][key], float("inf"))
    torch.save(blob, ckpt)
    assert main(["explain", str(run_copy), "--target", "norm", "--indices", "0", "--out", str(run_copy / "x")]) == 2
    line = _one_error_line(capsys, "explain")
    assert str(ckpt) in line and key in line and "non-finite" in line
    assert not (run_copy / "x").exists()


def test_resume_with_a_changed_model_shape_names_the_key(run_copy, capsys):
    assert main(["train", "--resume", str(run_copy), "--set", "model.proj_dim=8"]) == 2
    line = _one_error_line(capsys, "train")
    assert "model.proj_dim: 32 -> 8" in line
    assert main(["train", "--resume", str(run_copy), "--extend", "--set", "model.proj_dim=8"]) == 2
    line = _one_error_line(capsys, "train")
    assert "model.proj_dim (32 in the checkpoint, 8 now)" in line


def test_decompression_bomb_is_refused_by_explain_and_concepts(run_copy, tmp_path, capsys):
    bomb = _bomb_png(tmp_path / "bomb.png")
    out = tmp_path / "out"
    assert main(["explain", str(run_copy), "--target", "norm", "--images", str(bomb), "--out", str(out)]) == 2
    line = _one_error_line(capsys, "explain")
    assert str(bomb) in line and "DecompressionBomb" in line
    assert main(["concepts", str(run_copy), str(bomb)]) == 2
    line = _one_error_line(capsys, "concepts")
    assert str(bomb) in line and "DecompressionBomb" in line


def test_non_image_given_to_concepts_is_named(run_copy, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    assert main(["concepts", str(run_copy), str(text)]) == 2
    line = _one_error_line(capsys, "concepts")
    assert str(text) in line and "cannot read image" in line


def test_strict_folder_with_an_unreadable_file_names_it(tmp_path, capsys, tiny_overrides):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    sets = [f"{k}={v}" for k, v in tiny_overrides.items() if not k.startswith("data.num")]
    argv = ["train", "--set", "data.name=folder", "--set", f"data.root={root}", "--set", "data.strict=true",
            "--set", "data.batch_size=2", "--set", f"out_dir={tmp_path / 'runs'}"]
    for s in sets:
        if not s.startswith("data.batch_size"):
            argv += ["--set", s]
    assert main(argv) == 2
    line = _one_error_line(capsys, "train")
    assert str(bad) in line  # found when first read, so the run stops at its first batch


def test_debug_lets_the_traceback_through(run_copy, monkeypatch):
    _truncate(run_copy / "checkpoints" / "last.pt")
    from xbyol.errors import CheckpointError

    with pytest.raises(CheckpointError):
        main(["--debug", "eval", str(run_copy)])
    monkeypatch.setenv("XBYOL_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(["eval", str(run_copy)])


def test_an_internal_error_is_one_line_too(monkeypatch, capsys, run_copy):
    import xbyol.eval.evaluate as ev

    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ev, "evaluate", broken)
    assert main(["eval", str(run_copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xbyol eval: internal error: ZeroDivisionError: boom")
