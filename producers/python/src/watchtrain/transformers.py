"""Hugging Face transformers: ``Trainer(..., callbacks=[WatchtrainCallback("http://relay:8555")])``.

Progress per optimizer step and per evaluation batch is not exposed by the
Trainer, so progress is per step within the epoch; stats per epoch gather the
epoch's last logged training loss and its evaluation metrics (sent when the
next epoch starts or the training ends, because the Trainer evaluates after
``on_epoch_end``). Under several processes only the world process zero reports.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional

from transformers import TrainerCallback

from ._adapter import make_run, scalar
from .client import Run, checked_goals, checked_url

__all__ = ["WatchtrainCallback"]


class WatchtrainCallback(TrainerCallback):
    """Streams a transformers ``Trainer`` training to a Watchtrain relay."""

    def __init__(self, url: Optional[str] = None, *, name: Optional[str] = None, token: Optional[str] = None,
                 run: Optional[Run] = None, goals: Optional[Mapping[str, Optional[str]]] = None,
                 **run_kwargs: Any):
        checked_url(url)  # a malformed URL is an error here, not at the start of the fit
        run_kwargs["goals"] = checked_goals(goals)  # and so is an unknown goal
        self._args = (url, token, name, run_kwargs)
        self.run: Optional[Run] = run
        self._row: Dict[str, float] = {}
        self._row_epoch: Optional[int] = None
        self._steps_per_epoch = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if self.run is None or self.run._finished:
            url, token, name, kw = self._args
            model = kwargs.get("model")
            default = getattr(getattr(model, "config", None), "model_type", None) or "transformers"
            self.run = make_run(url, token, name, default, primary=state.is_world_process_zero, **kw)
        epochs = int(math.ceil(state.num_train_epochs or args.num_train_epochs or 0))
        self._steps_per_epoch = int(state.max_steps // epochs) if epochs and state.max_steps > 0 else 0
        self.run.configure(epochs=epochs, batches=self._steps_per_epoch)

    def _epoch(self, state) -> int:
        return int(state.epoch or 0)

    # trainer.evaluate() outside train() logs too: nothing to report before a training started.

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.run is None:
            return
        self._flush()
        self.run.set_epoch(self._epoch(state))

    def on_step_end(self, args, state, control, **kwargs):
        if self.run is None:
            return
        epoch = self._epoch(state) if self._steps_per_epoch == 0 else (state.global_step - 1) // self._steps_per_epoch
        done = state.global_step - epoch * self._steps_per_epoch if self._steps_per_epoch else state.global_step
        self.run.progress(done, self._steps_per_epoch, epoch=epoch)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.run is None or "train_runtime" in logs:
            return  # the end-of-training summary (mean loss over the whole run), not an epoch
        epoch = max(0, int(math.ceil(state.epoch or 0)) - 1)
        if self._row_epoch is not None and epoch != self._row_epoch:
            self._flush()
        self._row_epoch = epoch
        for key, value in logs.items():
            if key in ("epoch", "step", "total_flos", "learning_rate", "grad_norm") or key.endswith(("_runtime", "_per_second")):
                continue
            name = "train_loss" if key == "loss" else key
            self._row[name] = scalar(value)

    def _flush(self) -> None:
        if self._row_epoch is None or not self._row:
            return
        if not self.run.metrics:
            self.run.configure(metrics=sorted(self._row)[:8])
        self.run.stats(self._row_epoch, [self._row.get(n, math.nan) for n in self.run.metrics])
        self._row = {}
        self._row_epoch = None

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is None:
            return
        self._flush()
        self.run.finish("completed")
