"""Watchtrain: watch a machine-learning training from a Fitbit watch, a phone or a browser.

``import watchtrain`` needs no framework; the adapters import theirs when used:

* ``watchtrain.fastai.WatchtrainCallback`` (fastai ``Callback``)
* ``watchtrain.Run`` with ``run.track(loader)`` and ``run.log_epoch(...)`` (plain PyTorch or anything)
* ``watchtrain.lightning.WatchtrainCallback`` (Lightning ``Callback``)
* ``watchtrain.keras.WatchtrainCallback`` (``keras.callbacks.Callback``)
* ``watchtrain.transformers.WatchtrainCallback`` (``transformers.TrainerCallback``)
"""

from .client import DEFAULT_URL, Run, is_rank_zero, reason_of
from .protocol import DecodeError, EncodeError, Frame, decode, encode

__version__ = "0.1.0"
__all__ = ["Run", "reason_of", "is_rank_zero", "DEFAULT_URL", "Frame", "encode", "decode", "DecodeError", "EncodeError", "__version__"]
