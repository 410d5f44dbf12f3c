"""What the framework adapters share: building a Run from arguments or environment, and the deferred finish."""

from __future__ import annotations

import math
import threading
from typing import Any, Dict, List, Optional

from .client import Run


def make_run(run: Optional[Run], url: Optional[str], token: Optional[str], name: Optional[str], **kwargs: Any) -> Run:
    """``run`` if given, else a new :class:`Run` from the arguments (falling back to the environment)."""
    if run is not None:
        return run
    return Run(name, url=url, token=token, **kwargs)


def scalar(value: Any) -> float:
    """A float from a number, a tensor or an array of one element; NaN when it is not one."""
    try:
        if hasattr(value, "detach"):
            value = value.detach()
        if hasattr(value, "item"):
            value = value.item()
        return float(value)
    except Exception:
        return math.nan


def pick_metrics(logs: Dict[str, Any], limit: int = 8) -> List[str]:
    """Metric names from a framework's log dict: numeric entries, per-step duplicates left out."""
    names = []
    for key, value in logs.items():
        if key.endswith("_step") or key in ("epoch", "step", "time", "total_flos"):
            continue
        if not math.isnan(scalar(value)) or isinstance(value, float):
            names.append(key)
    return names[:limit]


class DeferredFinish:
    """Sends ``completed`` a moment after a fit ends unless another fit starts (fastai's ``fine_tune`` fits twice)."""

    def __init__(self, delay: float = 2.0):
        self.delay = delay
        self._timer: Optional[threading.Timer] = None

    def schedule(self, run: Run, outcome: str = "completed", reason: str = "") -> None:
        self.cancel()
        timer = threading.Timer(self.delay, run.finish, args=(outcome, reason))
        timer.daemon = True  # the atexit hook finishes the run if the process ends first
        timer.start()
        self._timer = timer

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
