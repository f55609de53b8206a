"""Interrupting a training run in tests."""

from __future__ import annotations

import lightning as L


class _StopAfter(L.Callback):
    """Ctrl-C at the end of epoch ``epoch`` (after its state was saved)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
