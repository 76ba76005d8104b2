"""Notice when validation loss rises for several epochs while training loss keeps falling."""

from __future__ import annotations


class OverfittingDetector:
    def __init__(self, epochs: int = 3) -> None:
        self.epochs = epochs
        self.history: list[tuple[int, float, float]] = []
        self.onset_epoch: int | None = None

    def update(self, epoch: int, train_loss: float, val_loss: float) -> bool:
        """Record an epoch; True the first time overfitting is seen (onset in ``onset_epoch``)."""
        self.history.append((epoch, train_loss, val_loss))
        if self.onset_epoch is not None or len(self.history) <= self.epochs:
            return False
        window = self.history[-(self.epochs + 1) :]
        val_rising = all(b[2] > a[2] for a, b in zip(window, window[1:]))
        train_falling = all(b[1] < a[1] for a, b in zip(window, window[1:]))
        if val_rising and train_falling:
            # The gap opened at the last epoch before validation loss started rising.
            self.onset_epoch = window[0][0]
            return True
        return False

    def state_dict(self) -> dict:
        return {"history": self.history, "onset_epoch": self.onset_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.history = [tuple(h) for h in state["history"]]
        self.onset_epoch = state["onset_epoch"]
