"""Losses against torch.nn.functional / hand computations, metrics against
scikit-style formulas written out here, on fixed data."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import DataError, OptionError
from layerlab.training.losses import resolve_loss
from layerlab.training.metrics import resolve_metric, resolve_metrics

Y = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.5, 0.4, 0.1]],
                 dtype=torch.float64)
T = torch.tensor([0, 2, 2, 1])
R = torch.tensor([[1.0, -2.0], [0.5, 3.0], [0.0, 0.2]], dtype=torch.float64)
RT = torch.tensor([[0.0, -1.0], [2.5, 3.0], [0.1, 0.0]], dtype=torch.float64)


def test_crossentropy_is_nll_of_log_scores_and_accepts_probability_targets():
    ce = resolve_loss("crossentropy")
    want = F.nll_loss(Y.log(), T)
    assert float(ce(Y, T)) == pytest.approx(float(want), rel=1e-12)
    onehot = F.one_hot(T, 3).double()
    assert float(ce(Y, onehot)) == pytest.approx(float(want), rel=1e-12)


def test_binary_crossentropy_matches_hand_formula():
    P = torch.tensor([[0.9, 0.2], [0.3, 0.6]], dtype=torch.float64)
    B = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    hand = -(math.log(0.9) + math.log(0.8) + math.log(0.7) + math.log(0.6)) / 4
    assert float(resolve_loss("binary-crossentropy")(P, B)) == pytest.approx(hand, rel=1e-12)


def test_regression_losses_match_hand_computation():
    e = (R - RT).numpy()
    n = e.shape[0]
    assert float(resolve_loss("mse")(R, RT)) == pytest.approx((e ** 2).mean(), rel=1e-12)
    assert float(resolve_loss("mean-squared-error")(R, RT)) == pytest.approx((e ** 2).mean())
    assert float(resolve_loss("l2loss")(R, RT)) == pytest.approx((e ** 2).sum() / n, rel=1e-12)
    assert float(resolve_loss("l1loss")(R, RT)) == pytest.approx(np.abs(e).sum() / n, rel=1e-12)
    h = np.where(np.abs(e) <= 1, 0.5 * e ** 2, np.abs(e) - 0.5)
    assert float(resolve_loss("huber")(R, RT)) == pytest.approx(h.sum() / n, rel=1e-12)
    assert float(resolve_loss("mse")(R, RT)) == pytest.approx(float(F.mse_loss(R, RT)))


def test_losses_compute_in_float32_for_bfloat16_outputs():
    out = resolve_loss("mse")(R.bfloat16(), RT.float())
    assert out.dtype == torch.float32


def test_unknown_loss_suggests_the_closest_name():
    with pytest.raises(OptionError, match="did you mean 'crossentropy'"):
        resolve_loss("crossentropie")
    with pytest.raises(OptionError, match="function loss"):
        resolve_loss(3)


def test_targets_checked_against_the_network_output():
    ce = resolve_loss("crossentropy")
    with pytest.raises(DataError, match="10 classes .* gives 3 scores .*more classes"):
        ce.prepare_targets(np.arange(10), 10, (3,))
    ce = resolve_loss("crossentropy")
    with pytest.raises(DataError, match="2 classes .*fewer"):
        ce.prepare_targets(np.array([0, 1, 1, 0]), 4, (3,))
    with pytest.raises(DataError, match="output size"):
        resolve_loss("mse").prepare_targets(np.zeros((4, 3)), 4, (2,))
    with pytest.raises(DataError, match="numeric"):
        resolve_loss("mse").prepare_targets(np.array(["a", "b"]), 2, (1,))
    T1 = resolve_loss("mse").prepare_targets(np.arange(4.0), 4, (1,))
    assert T1.shape == (4, 1)


# -- metrics: reference formulas written out (scikit-learn's definitions) -----------------
def _confusion(pred, true, K):
    tp = np.array([np.sum((pred == c) & (true == c)) for c in range(K)], float)
    fp = np.array([np.sum((pred == c) & (true != c)) for c in range(K)], float)
    fn = np.array([np.sum((pred != c) & (true == c)) for c in range(K)], float)
    return tp, fp, fn


def _metric(name, Yb, Tb, task="classification", **kw):
    m = resolve_metric(name, task) if not kw else type(resolve_metric(name, task))(task, **kw)
    m.reset()
    half = Yb.shape[0] // 2   # two updates: accumulation must be right
    m.update(Yb[:half], Tb[:half])
    m.update(Yb[half:], Tb[half:])
    return float(m.compute())


def _random_case(seed=0, n=40, K=4):
    g = torch.Generator().manual_seed(seed)
    S = torch.softmax(torch.randn(n, K, generator=g), dim=1)
    t = torch.randint(0, K, (n,), generator=g)
    return S, t


def test_accuracy_precision_recall_fscore_against_the_confusion_counts():
    S, t = _random_case()
    pred, true = S.argmax(1).numpy(), t.numpy()
    tp, fp, fn = _confusion(pred, true, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        P = np.nan_to_num(tp / (tp + fp))
        Rc = np.nan_to_num(tp / (tp + fn))
        F1 = np.nan_to_num(2 * P * Rc / (P + Rc))
    assert _metric("accuracy", S, t) == pytest.approx(np.mean(pred == true))
    assert _metric("precision", S, t) == pytest.approx(P.mean())
    assert _metric("recall", S, t) == pytest.approx(Rc.mean())
    assert _metric("fscore", S, t) == pytest.approx(F1.mean())
    micro = tp.sum() / (tp.sum() + fp.sum())
    assert _metric("precision", S, t, average="micro") == pytest.approx(micro)


def test_binary_task_metrics_per_element():
    P = torch.tensor([[0.9, 0.2], [0.3, 0.6], [0.7, 0.8]])
    B = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert _metric("accuracy", P, B, "binary") == pytest.approx(4 / 6)
    # column 0: tp 1 fp 1 fn 1 -> P=R=1/2; column 1: tp 2, fp 0, fn 0 -> 1
    assert _metric("precision", P, B, "binary") == pytest.approx(0.75)
    assert _metric("recall", P, B, "binary") == pytest.approx(0.75)


def _auc_by_pairs(score, pos):
    p, q = score[pos], score[~pos]
    wins = (p[:, None] > q[None, :]).sum() + 0.5 * (p[:, None] == q[None, :]).sum()
    return wins / (len(p) * len(q))


def test_auc_is_the_pairwise_ranking_probability_with_ties():
    S, t = _random_case(1)
    S = (S * 4).round() / 4      # ties
    want = np.mean([_auc_by_pairs(S[:, c].numpy(), t.numpy() == c) for c in range(4)])
    assert _metric("auc", S, t) == pytest.approx(want)
    # perfect and reversed rankings
    s = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    assert _metric("auc", s, torch.tensor([0, 0, 1, 1])) == 1.0
    assert _metric("auc", s, torch.tensor([1, 1, 0, 0])) == 0.0


def test_rmse_and_mae():
    e = (R - RT).numpy()
    assert _metric("rmse", R, RT, "regression") == pytest.approx(np.sqrt((e ** 2).mean()))
    assert _metric("mae", R, RT, "regression") == pytest.approx(np.abs(e).mean())


def test_callables_and_update_compute_objects():
    def top2(Y, T):
        return float((Y.topk(2, dim=1).indices == T[:, None]).any(1).float().mean())

    class Counter:                   # torchmetrics' shape: update, compute, reset
        name = "seen"

        def __init__(self):
            self.n = 0

        def reset(self):
            self.n = 0

        def update(self, Y, T):
            self.n += Y.shape[0]

        def compute(self):
            return torch.tensor(self.n)

    S, t = _random_case(2)
    m1, m2 = resolve_metrics([top2, Counter()], "classification")
    assert (m1.name, m2.name) == ("top2", "seen")
    want = np.mean([(t[i] in S[i].topk(2).indices) for i in range(len(t))])
    for m in (m1, m2):
        m.reset()
        m.update(S[:10], t[:10])
        m.update(S[10:], t[10:])
    assert float(m1.compute()) == pytest.approx(want)
    assert int(m2.compute()) == len(t)


def test_metric_errors_name_the_metric():
    with pytest.raises(OptionError, match="did you mean 'accuracy'"):
        resolve_metric("acuracy", "classification")
    with pytest.raises(OptionError, match="'accuracy' does not fit a regression loss"):
        resolve_metric("accuracy", "regression")
    with pytest.raises(OptionError, match="'rmse' does not fit a classification"):
        resolve_metric("rmse", "classification")
    with pytest.raises(OptionError, match="twice"):
        resolve_metrics(["accuracy", "accuracy"], "classification")
