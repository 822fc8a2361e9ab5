"""Graceful stops: the first SIGINT/SIGTERM asks the trainer to stop after the current step.

The trainer polls :attr:`StopRequest.signum` between steps, saves a checkpoint and raises
``TrainingInterrupted``. A second SIGINT (or SIGTERM) raises ``KeyboardInterrupt`` at once,
for a user who cannot wait for the step to finish.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that installs the handlers (main thread only) and restores the old ones."""

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.announce = announce
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                self._previous[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            print(
                f"\n{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint "
                "(press Ctrl-C again to abort at once)",
                file=sys.stderr,
                flush=True,
            )
