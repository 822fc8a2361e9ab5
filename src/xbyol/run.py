"""Load a run directory: config, trained method, datasets. Everything downstream of
training (eval, explain, dissect, report, serve) reads runs through here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from xbyol.augment import preprocess
from xbyol.config import Config, load_run_config
from xbyol.data import build_dataset
from xbyol.data.base import SampleDataset
from xbyol.errors import CheckpointError
from xbyol.methods import create_method
from xbyol.models import create_backbone
from xbyol.models.interpretable import wrap_interpretable
from xbyol.training.checkpoint import check_finite_state, load_checkpoint


class LoadedRun:
    """A trained run, ready for evaluation and explanation.

    Attributes:
        run_dir: the run directory.
        cfg: its resolved config.
        device: where the model lives.
        method: the trained method in eval mode.
        backbone: the online encoder (``forward(x) -> [B, D]``, ``forward_features``).
        step: the optimiser step of the loaded checkpoint.
    """

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = "last") -> None:
        self._datasets: dict[str, SampleDataset] = {}
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"run directory {self.run_dir} does not exist")
        # point the config at where the run lives now (it may have been moved or trained
        # elsewhere), so methods find the files they saved there (e.g. the concept bank)
        cfg = load_run_config(self.run_dir)
        self.cfg: Config = dataclasses.replace(cfg, out_dir=str(self.run_dir.parent), name=self.run_dir.name)
        self.device = torch.device(device)
        ckpt_path = self.run_dir / "checkpoints" / f"{checkpoint}.pt"
        ckpt = load_checkpoint(ckpt_path, map_location=self.device)
        check_finite_state(ckpt_path, ckpt["method"])
        self.step = int(ckpt["step"])
        self.method = create_method(self.cfg, self.dataset("train")).to(self.device)
        try:
            self.method.load_state_dict(ckpt["method"])
        except RuntimeError as e:
            raise CheckpointError(
                f"{ckpt_path} does not fit the model built from {self.run_dir / 'config.yaml'} "
                f"({str(e).splitlines()[-1].strip()})"
            ) from None
        self.method.eval()

    @property
    def backbone(self) -> nn.Module:
        return self.method.backbone

    def dataset(self, split: str) -> SampleDataset:
        """The run's dataset split ("train" or "test"), built once."""
        if split not in self._datasets:
            self._datasets[split] = build_dataset(self.cfg, split)
        return self._datasets[split]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
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

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def __repr__(self) -> str:
        return f"LoadedRun({str(self.run_dir)!r}, method={self.cfg.method.name}, step={self.step})"


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = "last") -> LoadedRun:
    """Load ``RUN_DIR/config.yaml`` and ``RUN_DIR/checkpoints/<checkpoint>.pt``."""
    return LoadedRun(run_dir, device=device, checkpoint=checkpoint)
