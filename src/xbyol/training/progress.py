"""What a training run prints while it trains, suited to where the output goes.

On a terminal (and with ``train.progress``) a tqdm bar; where stdout or stderr is a file
or a pipe (a scheduler's log, ``> log.txt``), or with ``train.progress=false``, one plain
line per log interval (step, loss, images/s, ETA), as Lightning and solo-learn print:
carriage-return redraws would fill a log file with copies of one bar.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

from xbyol.training.callbacks import Callback, StepInfo


def duration(seconds: float) -> str:
    """``h:mm:ss`` of a non-negative number of seconds (rounded down)."""
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}"


class ProgressBar(Callback):
    """A tqdm bar on stderr: one tick per step; loss, lr, tau and images/s at every log interval."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Any = None

    def on_train_start(self, step: int, total: int) -> None:
        self.bar = tqdm(total=total, initial=step, desc=self.desc, unit="step", dynamic_ncols=True)

    def on_step_end(self, step: int, info: StepInfo) -> None:
        self.bar.update(1)

    def on_log(self, step: int, row: dict[str, Any]) -> None:
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.3g}", tau=f"{row.get('tau', float('nan')):.4f}",
                             img_s=f"{row['images_per_s']:.0f}")

    def on_train_end(self, step: int, status: str) -> None:
        if self.bar is not None:
            self.bar.close()


class PlainLog(Callback):
    """One line on stdout per logged step, and one when the session ends::

        step 40/200  loss 0.5213  images/s 912  ETA 0:02:31
        finished at step 200/200 in 0:03:10
    """

    def __init__(self) -> None:
        self.start_step, self.total, self.t0 = 0, 0, 0.0

    def on_train_start(self, step: int, total: int) -> None:
        self.start_step, self.total, self.t0 = step, total, time.monotonic()

    def on_log(self, step: int, row: dict[str, Any]) -> None:
        per_step = (time.monotonic() - self.t0) / max(step - self.start_step, 1)
        print(f"step {step}/{self.total}  loss {row['loss']:.4f}  images/s {row['images_per_s']:.0f}"
              f"  ETA {duration(per_step * (self.total - step))}", flush=True)

    def on_train_end(self, step: int, status: str) -> None:
        print(f"{status} at step {step}/{self.total} in {duration(time.monotonic() - self.t0)}", flush=True)


def progress_display(progress: bool, desc: str) -> Callback:
    """:class:`ProgressBar` when ``progress`` and both stdout and stderr are terminals, else :class:`PlainLog`."""
    if progress and sys.stdout.isatty() and sys.stderr.isatty():
        return ProgressBar(desc)
    return PlainLog()
