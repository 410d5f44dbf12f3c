"""Lightning: ``Trainer(callbacks=[WatchtrainCallback("http://relay:8555")])``.

Works with ``lightning`` (``lightning.pytorch``) and with the older
``pytorch_lightning`` package. Progress per batch for train and validation,
stats per epoch from ``trainer.callback_metrics`` (names from the first
epoch), ``on_exception`` reports a failure (a ``KeyboardInterrupt`` as cancelled).
With several devices only the global rank 0 reports (``trainer.is_global_zero``).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - the older package name
    from pytorch_lightning.callbacks import Callback

from ._adapter import make_run, pick_metrics, scalar
from .client import Run, checked_goals, checked_url

__all__ = ["WatchtrainCallback"]


def _total(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        value = sum(v for v in value if v != float("inf"))
    try:
        return int(value) if value != float("inf") else 0
    except (TypeError, ValueError, OverflowError):
        return 0


class WatchtrainCallback(Callback):
    """Streams a Lightning training to a Watchtrain relay."""

    def __init__(self, url: Optional[str] = None, *, name: Optional[str] = None, token: Optional[str] = None,
                 run: Optional[Run] = None, goals: Optional[Mapping[str, Optional[str]]] = None,
                 **run_kwargs: Any):
        super().__init__()
        checked_url(url)  # a malformed URL is an error here, not at the start of the fit
        run_kwargs["goals"] = checked_goals(goals)  # and so is an unknown goal
        self._args = (url, token, name, run_kwargs)
        self.run: Optional[Run] = run

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.run is None or self.run._finished:
            url, token, name, kwargs = self._args
            self.run = make_run(url, token, name, type(pl_module).__name__,
                                primary=trainer.is_global_zero, **kwargs)
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 0
        self.run.configure(epochs=epochs)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.run.set_epoch(trainer.current_epoch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.run.progress(batch_idx + 1, _total(trainer.num_training_batches), epoch=trainer.current_epoch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking or self.run is None:
            return
        self.run.progress(batch_idx + 1, _total(trainer.num_val_batches), epoch=trainer.current_epoch, phase="valid")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        logs = dict(trainer.callback_metrics)
        if not self.run.metrics:
            self.run.configure(metrics=sorted(pick_metrics(logs)))
        self.run.stats(trainer.current_epoch, [scalar(logs.get(n, float("nan"))) for n in self.run.metrics])

    def on_fit_end(self, trainer, pl_module) -> None:
        if getattr(trainer, "interrupted", False):
            self.run.finish("cancelled", "interrupted")
        else:
            self.run.finish("completed")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.run is not None:
            self.run.fail(exception)
