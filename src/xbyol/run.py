"""Load a run directory: config, trained method, datasets. Everything downstream of
training (eval, explain, dissect, report, serve) reads runs through here, typed as
:class:`xbyol.rundir.Run`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from xbyol.augment import preprocess
from xbyol.config import Config
from xbyol.data import build_dataset
from xbyol.data.base import SampleDataset
from xbyol.errors import CheckpointError
from xbyol.methods import create_method
from xbyol.models import create_backbone
from xbyol.models.interpretable import wrap_interpretable
from xbyol.rundir import RunDir, extract_features
from xbyol.training.checkpoint import check_finite_state, load_checkpoint


class LoadedRun:
    """A trained run, ready for evaluation and explanation (implements :class:`xbyol.rundir.Run`).

    Attributes:
        paths: the run directory.
        cfg: its resolved config.
        device: where the model lives.
        method: the trained method in eval mode.
        backbone: the online encoder (``forward(x) -> [B, D]``, ``forward_features``).
        step: the optimiser step of the loaded checkpoint.
    """

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = "last") -> None:
        self._datasets: dict[str, SampleDataset] = {}
        self.paths = RunDir(run_dir)
        # point the config at where the run lives now (it may have been moved or trained
        # elsewhere), so methods find the files they saved there (e.g. the concept bank)
        cfg = self.paths.read_config()
        self.cfg: Config = dataclasses.replace(cfg, out_dir=str(self.paths.root.parent), name=self.paths.root.name)
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        ckpt_path = self.paths.checkpoint(checkpoint)
        ckpt = load_checkpoint(ckpt_path, map_location=self.device)
        check_finite_state(ckpt_path, ckpt["method"])
        self.step = int(ckpt["step"])
        self.method = create_method(self.cfg, self.dataset("train")).to(self.device)
        try:
            self.method.load_state_dict(ckpt["method"])
        except RuntimeError as e:
            raise CheckpointError(
                f"{ckpt_path} does not fit the model built from {self.paths.config} "
                f"({str(e).splitlines()[-1].strip()})"
            ) from None
        self.method.eval()

    @property
    def run_dir(self) -> Path:
        return self.paths.root

    @property
    def backbone(self) -> nn.Module:
        return self.method.backbone

    def dataset(self, split: str) -> SampleDataset:
        """The run's dataset split ("train" or "test"), built once."""
        if split not in self._datasets:
            self._datasets[split] = build_dataset(self.cfg, split)
        return self._datasets[split]

    def encode(
        self,
        split: str,
        indices: Sequence[int] | None = None,
        fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Features ``[N, D]`` (float32, CPU) of the un-augmented images ``indices`` (default all) of a split,
        through ``fn`` (preprocessed images -> features; default the backbone)."""
        ds: Dataset = self.dataset(split)
        if indices is not None:
            ds = Subset(ds, list(indices))
        return extract_features(fn or self.backbone, ds, device=self.device, progress=progress)[0]

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Representation ``[B, D]`` of uint8 (or [0,1] float) images ``[B, 3, H, W]``."""
        return self.method.encode(preprocess(images.to(self.device)))

    def random_init_backbone(self, seed: int = 0) -> nn.Module:
        """A randomly initialised twin of the backbone (same architecture), for baselines."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            base = create_backbone(self.cfg.model.backbone)
            m = self.cfg.model
            net: nn.Module = (
                wrap_interpretable(base, m.interpretable_weight, tau=m.interpretable_tau) if m.interpretable_layer else base
            )
        return net.to(self.device).eval()

    def __repr__(self) -> str:
        return f"LoadedRun({str(self.run_dir)!r}, method={self.cfg.method.name}, step={self.step})"


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = "last") -> LoadedRun:
    """Load ``RUN_DIR/config.yaml`` and ``RUN_DIR/checkpoints/<checkpoint>.pt``."""
    return LoadedRun(run_dir, device=device, checkpoint=checkpoint)
