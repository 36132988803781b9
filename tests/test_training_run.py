"""The trainer as a TrainingRun: History, EarlyStopping state, listeners' events and state."""

import copy
import math

import numpy as np
import torch

import layerlab as ll
from layerlab.training.checkpoint import checkpoint_state, read_checkpoint
from layerlab.training.history import History
from layerlab.training.listeners import Listener, TableColumn
from layerlab.training.trainer import TrainingRun
from layerlab.training.validation import EarlyStopping


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 3, generator=g)
    return X, (X[:, 0] > 0).long()


def _layers():
    return [ll.FeatureInput(3), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]


def _opts(**kw):
    return ll.training_options("sgdm", **{**dict(max_epochs=3, mini_batch_size=16, seed=1,
                                                 verbose=False), **kw})


def test_history_records_and_round_trips():
    h = History(total=4, device=torch.device("cpu"))
    h.record(1, loss=torch.tensor(0.5), metric=torch.tensor(0.25), learn_rate=0.1, epoch=1)
    h.record(2, loss=torch.tensor(0.4), metric=torch.tensor(0.5), learn_rate=0.1, epoch=1,
             validation_loss=0.3)
    assert h.iterations == 2
    assert np.allclose(h.column("loss"), [0.5, 0.4])
    assert np.isnan(h.column("validation_loss")[0]) and h.value("validation_loss", 2) == 0.3
    h2 = History(total=4, device=torch.device("cpu"))
    h2.load_state_dict(h.state_dict())
    for name in h.series:
        assert np.array_equal(h.column(name), h2.column(name), equal_nan=True), name
    # checkpoints written before the series were renamed
    h3 = History(total=4, device=torch.device("cpu"))
    h3.load_state_dict({"loss": torch.tensor([1.0]), "lr": torch.tensor([0.5])})
    assert h3.column("learn_rate").tolist() == [0.5]


def test_early_stopping_state_round_trips():
    e = EarlyStopping(patience=3, keep_best=False)
    for i, v in enumerate([1.0, 0.5, 0.7, 0.8], 1):
        e.update(None, v, i)
    e2 = EarlyStopping(patience=3, keep_best=False)
    e2.load_state_dict(e.state_dict())
    assert (e2.best_loss, e2.bad, e2.best_iteration) == (0.5, 2, 2)
    assert e2.update(None, 0.9, 5) is True and e.update(None, 0.9, 5) is True
    assert EarlyStopping(2, False).state_dict()["best_loss"] == math.inf


class Recorder(Listener):
    name = "recorder"

    def __init__(self):
        self.events = []
        self.epochs_seen = 0

    def on_start(self, run):
        self.events.append(("start", run.iteration))

    def on_iteration(self, run, step):
        self.events.append(("iteration", step.iteration))
        assert step.loss.dim() == 0 and step.outputs.shape[0] == step.targets.shape[0]

    def on_epoch_end(self, run, epoch):
        self.events.append(("epoch", epoch))
        self.epochs_seen += 1

    def on_end(self, run):
        self.events.append(("end", run.stop_reason))

    def state_dict(self):
        return {"epochs_seen": self.epochs_seen, "weights": torch.arange(3.0)}

    def load_state_dict(self, state):
        self.epochs_seen = state["epochs_seen"]
        assert torch.equal(state["weights"], torch.arange(3.0))


def test_listener_hears_every_event_in_order():
    X, Y = _data()
    rec = Recorder()
    ll.train_network(X, Y, _layers(), _opts(), listeners=[rec])
    its = [e[1] for e in rec.events if e[0] == "iteration"]
    assert its == list(range(1, 13))
    assert rec.events[0] == ("start", 0) and rec.events[-1] == ("end", "max-epochs")
    assert rec.events.index(("epoch", 1)) == 1 + 4 and rec.epochs_seen == 3


def test_listener_stop_and_state_in_checkpoint(tmp_path):
    X, Y = _data()

    class StopAt5(Recorder):
        def on_iteration(self, run, step):
            return step.iteration == 5

    rec = StopAt5()
    _, info = ll.train_network(X, Y, _layers(), _opts(checkpoint_path=str(tmp_path)),
                               listeners=[rec])
    assert info.iterations == 5 and info.stop_reason == "output-fn"
    state = checkpoint_state(*read_checkpoint(tmp_path))
    assert state["epoch"] == 1 and state["iteration"] == 4   # written after epoch 1 only
    assert state["listeners"]["recorder"]["epochs_seen"] == 1
    # resuming restores the listener's state
    rec2 = Recorder()
    run = TrainingRun.create(X, Y, _layers(), _opts(), resume_from=tmp_path)
    run.add_listener(rec2)
    run.load_state_dict(state)
    assert rec2.epochs_seen == 1 and run.iteration == 4


def test_extra_table_column_and_series():
    X, Y = _data()
    import io

    class LossTimesTwo(Listener):
        name = "double"

        def on_start(self, run):
            run.history.add("double_loss")

        def on_iteration(self, run, step):
            run.history.record(step.iteration, double_loss=2 * float(step.loss))

    run = TrainingRun.create(X, Y, _layers(), _opts(verbose=True, verbose_frequency=4),
                             stream=(out := io.StringIO()))
    run.table_columns.append(TableColumn("Twice", "Loss",
                                         lambda r, s: f"{2 * s.shown_loss:.4f}"))
    run.listeners.insert(0, LossTimesTwo())
    net, info = run.run()
    assert np.allclose(info.history["double_loss"], 2 * info.training_loss)
    lines = out.getvalue().splitlines()
    assert "Twice" in lines[2] and lines[5].count("|") == 8   # 7 columns
    row = [c.strip() for c in lines[5].split("|")[1:-1]]
    assert abs(float(row[6]) - 2 * float(row[3])) < 2e-4


def test_state_dict_resume_equals_uninterrupted():
    X, Y = _data()
    straight, info_s = ll.train_network(X, Y, _layers(), _opts())
    first = TrainingRun.create(X, Y, _layers(), _opts(max_epochs=3))

    class StopAfterEpoch1(Listener):
        name = "stopper"

        def on_epoch_end(self, run, epoch):
            self.state = copy.deepcopy(run.state_dict())   # the optimizer's are live tensors
            self.weights = {k: v.clone() for k, v in run.net.state_dict().items()}

        def on_iteration(self, run, step):
            return step.iteration == 5   # stop in epoch 2, after the snapshot

    stopper = StopAfterEpoch1()
    first.add_listener(stopper)
    first.run()
    second = TrainingRun.create(X, Y, _layers(), _opts())
    second.load_state_dict({**stopper.state, "network": stopper.weights})
    resumed, info_r = second.run()
    for (k, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(a, b), k
    assert np.array_equal(info_r.training_loss, info_s.training_loss)
    assert np.array_equal(info_r.training_metric, info_r.training_accuracy)
