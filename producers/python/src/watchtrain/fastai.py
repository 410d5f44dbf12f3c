"""fastai: ``learn.fit_one_cycle(10, cbs=WatchtrainCallback("http://relay:8555"))``.

Metric names come from the recorder (``train_loss``, ``valid_loss`` and the
learner's metrics), progress is sent per batch for train and valid, stats per
epoch; a cancelled fit is reported as cancelled, an exception as failed.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Optional

from fastai.callback.core import Callback
from fastai.learner import Recorder

from ._adapter import DeferredFinish, make_run, scalar
from .client import Run, checked_goals, checked_url, reason_of

__all__ = ["WatchtrainCallback"]


class WatchtrainCallback(Callback):
    """Streams a fastai training to a Watchtrain relay."""

    order = Recorder.order + 1  # after the recorder has written the epoch's values
    run_valid = True

    def __init__(self, url: Optional[str] = None, *, name: Optional[str] = None, token: Optional[str] = None,
                 run: Optional[Run] = None, goals: Optional[Mapping[str, Optional[str]]] = None,
                 **run_kwargs: Any):
        checked_url(url)  # a malformed URL is an error here, not at the start of the fit
        run_kwargs["goals"] = checked_goals(goals)  # and so is an unknown goal
        self._args = (run, url, token, name, run_kwargs)
        self.run_: Optional[Run] = run
        self._offset = 0  # epochs of earlier fits with this callback (fine_tune fits twice)
        self._in_fit = False
        self._cancelled = False
        self._finish = DeferredFinish()

    # fastai sets `cb.learn = None` in the `finally` that removes the callbacks of `fit(cbs=...)`:
    # reaching it inside a fit means the fit raised.
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "learn" and value is None and self.__dict__.get("_in_fit"):
            self._fit_raised()
        super().__setattr__(name, value)

    def _fit_raised(self) -> None:
        self._in_fit = False
        error = sys.exc_info()[1]
        if self.run_ is not None:
            self._finish.cancel()
            if error is None or isinstance(error, KeyboardInterrupt):
                self.run_.finish("cancelled", reason_of(error) if error else "")
            else:
                self.run_.fail(error)

    def _inside_learner_context(self) -> bool:
        """True when this before_fit comes from ``with learn:`` (validate, get_preds), not from a fit."""
        enter = getattr(type(self.learn).__enter__, "__code__", None)
        frame = sys._getframe(1)
        for _ in range(40):
            if frame is None:
                return False
            if frame.f_code is enter:
                return True
            frame = frame.f_back
        return False

    def before_fit(self) -> None:
        if self._inside_learner_context():
            return  # learn.validate() and learn.get_preds() call before_fit too: not a training
        self._finish.cancel()
        if self._in_fit:  # the previous fit raised and nobody removed us
            self._fit_raised()
        if self.run_ is not None and self.run_._finished:
            self.run_ = None  # a new fit after a finished one: a new run
            self._offset = 0
        first = self.run_ is None
        if first:
            run, url, token, name, kwargs = self._args
            self.run_ = make_run(url, token, name, None, **kwargs)
        elif self.learn.epoch == 0:
            self._offset = self.run_.epoch
        names = [n for n in self.recorder.metric_names if n not in ("epoch", "time")]
        self.run_.configure(metrics=names, epochs=self._offset + self.n_epoch, batches=len(self.dls.train))
        self._in_fit = True
        self._cancelled = False

    # learn.validate() and learn.get_preds() run batches outside any fit: nothing to report then.

    def before_epoch(self) -> None:
        if self._in_fit:
            self.run_.set_epoch(self._offset + self.epoch)

    def after_batch(self) -> None:
        if not self._in_fit:
            return
        phase = "train" if self.training else "valid"
        self.run_.progress(self.iter + 1, self.n_iter, epoch=self._offset + self.epoch, phase=phase)

    def after_epoch(self) -> None:
        if not self._in_fit:
            return
        names = self.recorder.metric_names
        values = [scalar(v) for n, v in zip(names, self.recorder.log) if n not in ("epoch", "time")]
        self.run_.stats(self._offset + self.epoch, values)

    def after_cancel_fit(self) -> None:
        self._cancelled = True

    def after_fit(self) -> None:
        if not self._in_fit:
            return
        self._in_fit = False
        if self._cancelled:
            self.run_.finish("cancelled", "CancelFitException")
        else:
            self._finish.schedule(self.run_)
