"""Keras 3: ``model.fit(x, y, epochs=10, callbacks=[WatchtrainCallback("http://relay:8555")])``.

Any backend (JAX, PyTorch, TensorFlow). Progress per batch for training and
validation, stats per epoch from the epoch's ``logs`` (``loss``,
``val_loss``, metrics), finished at ``on_train_end``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import keras

from ._adapter import make_run, pick_metrics, scalar
from .client import Run, checked_goals, checked_url

__all__ = ["WatchtrainCallback"]


class WatchtrainCallback(keras.callbacks.Callback):
    """Streams a Keras training to a Watchtrain relay."""

    def __init__(self, url: Optional[str] = None, *, name: Optional[str] = None, token: Optional[str] = None,
                 run: Optional[Run] = None, goals: Optional[Mapping[str, Optional[str]]] = None,
                 **run_kwargs: Any):
        super().__init__()
        checked_url(url)  # a malformed URL is an error here, not at the start of the fit
        run_kwargs["goals"] = checked_goals(goals)  # and so is an unknown goal
        self._args = (url, token, name, run_kwargs)
        self.run: Optional[Run] = run
        self._epoch = 0
        self._in_fit = False

    def on_train_begin(self, logs=None) -> None:
        if self.run is None or self.run._finished:
            url, token, name, kwargs = self._args
            model_name = getattr(self.model, "name", None) if self.model is not None else None
            self.run = make_run(url, token, name, model_name, **kwargs)
        params = self.params or {}
        self.run.configure(epochs=int(params.get("epochs") or 0), batches=int(params.get("steps") or 0))
        self._in_fit = True

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch
        self.run.set_epoch(epoch)

    def on_train_batch_end(self, batch, logs=None) -> None:
        steps = (self.params or {}).get("steps") or 0
        self.run.progress(batch + 1, int(steps), epoch=self._epoch)

    def on_test_batch_end(self, batch, logs=None) -> None:
        if self._in_fit:
            self.run.progress(batch + 1, 0, epoch=self._epoch, phase="valid")

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = dict(logs or {})
        if not self.run.metrics:
            self.run.configure(metrics=pick_metrics(logs))
        self.run.stats(epoch, [scalar(logs.get(n, float("nan"))) for n in self.run.metrics])

    def on_train_end(self, logs=None) -> None:
        self._in_fit = False
        self.run.finish("completed")
