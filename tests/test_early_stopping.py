"""The decisions that end a run and pick its test weights: early stopping, the overfitting
detector, and restoring the best epoch. Fast: no real data."""

import pytest
import torch
from torch import nn

from reslab.data.image_data import ImageSet
from reslab.data.loader import TensorBatchLoader
from reslab.training.callbacks import Callback
from reslab.training.checkpoint import load_checkpoint
from reslab.training.early_stopping import EarlyStopping, monitor_mode
from reslab.training.options import Stopping
from reslab.training.overfitting import OverfittingDetector
from reslab.training.schedule import LRSchedule
from reslab.training.trainer import Trainer


def _feed(stopper, values):
    """Epochs 1.. with these values; returns (epochs that were a new best, epoch it stopped at)."""
    bests = []
    for epoch, value in enumerate(values, start=1):
        if stopper.update(value, epoch):
            bests.append(epoch)
        if stopper.should_stop:
            return bests, epoch
    return bests, None


def test_monitor_mode_follows_the_metric_name_unless_set():
    assert monitor_mode("val/loss") == "min" and monitor_mode("val/acc") == "max"
    assert monitor_mode("val/f1_macro") == "max" and monitor_mode("train/loss") == "min"
    assert monitor_mode("val/loss", "max") == "max"


def test_stops_after_patience_epochs_without_improvement():
    bests, stopped = _feed(EarlyStopping("val/loss", patience=2), [1.0, 0.8, 0.9, 0.85, 0.7])
    assert bests == [1, 2] and stopped == 4


def test_min_delta_counts_only_improvements_larger_than_it():
    stopper = EarlyStopping("val/loss", patience=2, min_delta=0.05)
    bests, stopped = _feed(stopper, [1.0, 0.97, 0.96, 0.9])
    assert bests == [1] and stopped == 3 and stopper.best == 1.0 and stopper.best_epoch == 1


def test_mode_max_for_accuracies():
    stopper = EarlyStopping("val/acc", patience=2)
    bests, stopped = _feed(stopper, [0.5, 0.7, 0.6, 0.72, 0.71, 0.70])
    assert stopper.mode == "max" and bests == [1, 2, 4] and stopped == 6
    assert stopper.best == 0.72 and stopper.best_epoch == 4


@pytest.mark.parametrize("patience", [0, None])
def test_patience_zero_or_none_never_stops_but_still_tracks_the_best(patience):
    stopper = EarlyStopping("val/loss", patience=patience)
    bests, stopped = _feed(stopper, [1.0, 0.5, *[0.9] * 50])
    assert stopped is None and bests == [1, 2] and stopper.best_epoch == 2


def test_state_round_trip_continues_the_count():
    stopper = EarlyStopping("val/loss", patience=3)
    _feed(stopper, [1.0, 0.5, 0.6])
    again = EarlyStopping("val/loss", patience=3)
    again.load_state_dict(stopper.state_dict())
    assert not again.update(0.7, 4) and not again.should_stop
    assert not again.update(0.55, 5) and again.should_stop and again.best_epoch == 2


def test_overfitting_is_val_loss_rising_while_train_loss_falls():
    detector = OverfittingDetector(epochs=3)
    train = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2]
    val = [1.0, 0.9, 0.85, 0.9, 0.95, 1.0, 1.1]
    seen = [detector.update(e, t, v) for e, (t, v) in enumerate(zip(train, val), start=1)]
    # val/loss rose at epochs 4, 5 and 6: the gap opened after epoch 3, reported once.
    assert seen == [False] * 5 + [True, False] and detector.onset_epoch == 3


def test_overfitting_needs_both_curves_and_the_whole_window():
    detector = OverfittingDetector(epochs=3)
    # val/loss rising with train/loss rising too (diverging, not overfitting), then a dip.
    for epoch, (t, v) in enumerate([(1, 1), (1.1, 1.1), (1.2, 1.2), (1.3, 1.3), (1.2, 1.2)], 1):
        assert not detector.update(epoch, t, v)
    state = detector.state_dict()
    again = OverfittingDetector(epochs=3)
    again.load_state_dict(state)
    assert again.onset_epoch is None and len(again.history) == 5


class ScriptedMonitor(Callback):
    """Replace val/loss by scripted values and remember the weights each epoch ended with."""

    def __init__(self, values):
        self.values, self.weights = values, {}

    def on_epoch_end(self, trainer, epoch, row):
        self.weights[epoch] = [p.detach().clone() for p in trainer.model.parameters()]
        return {"val/loss": self.values[epoch - 1]}


def test_fit_ends_with_the_best_epochs_weights_restored(tmp_path):
    torch.manual_seed(0)
    images = ImageSet(
        torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 3, (64,))
    )
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    script = ScriptedMonitor([3.0, 1.0, 2.0, 2.5, 2.6])
    trainer = Trainer(
        model,
        optimizer,
        LRSchedule(optimizer, None, "epoch", 0),
        stopping=Stopping(10, EarlyStopping("val/loss", "min", 3)),
        classes=3,
        checkpoint_dir=tmp_path,
        progress=False,
        callbacks=[script],
    )
    loader = TensorBatchLoader(images, 16, (0.5,), (0.25,), shuffle=True)
    fit = trainer.fit(loader, TensorBatchLoader(images, 64, (0.5,), (0.25,)))
    assert fit.status == "stopped_early" and fit.epochs == 5 and fit.best_epoch == 2
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2
    # best.pt began as a link to epoch 2's last.pt; later saves of last.pt left it alone.
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 5
    restored = list(model.parameters())
    for now, best, last in zip(restored, script.weights[2], script.weights[5]):
        assert torch.equal(now, best) and not torch.equal(now, last)
