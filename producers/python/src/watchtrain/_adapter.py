"""What the framework adapters share: building a Run from arguments or environment, and the deferred finish."""

from __future__ import annotations

import math
import os
import threading
from typing import Any, Dict, List, Optional

from .client import Run


def make_run(url: Optional[str], token: Optional[str], name: Optional[str], default_name: Optional[str],
             primary: Optional[bool] = None, **kwargs: Any) -> Run:
    """A new :class:`Run` for a callback.

    The name is the callback's ``name=``, else ``WATCHTRAIN_NAME`` (so every run of a
    sweep can be told apart), else the framework's default (the model's class, say).
    ``primary``: the framework's "this is the process of rank 0" (None: from the environment).
    """
    name = name or os.environ.get("WATCHTRAIN_NAME") or default_name
    return Run(url, name, token=token, primary=primary, **kwargs)


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
