"""Fixtures: tiny on-disk datasets in tmp_path (builders live in data_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import make_cifar10, make_cifar100, make_coco, make_image_folder


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    make_image_folder(root, {"apple": 5, "box": 5})
    return root


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    make_cifar10(tmp_path / "c10")
    return tmp_path / "c10"


@pytest.fixture
def cifar100_root(tmp_path: Path) -> Path:
    make_cifar100(tmp_path / "c100")
    return tmp_path / "c100"


@pytest.fixture
def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    return make_coco(tmp_path / "coco")
