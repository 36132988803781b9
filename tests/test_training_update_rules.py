"""Update rules through real (tiny) training runs, each written to fail for
a bug planted in the code (issue 17): learn-rate factors ignored, the
piecewise schedule off by one epoch or removed, Adam's decay factors
swapped, RMSprop's decay factor ignored after the first step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layerlab as ll


def _problem(n=48):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, 3, generator=g)
    Y = (torch.arange(n) % 3 > 0).long()
    net = ll.Network([ll.FeatureInput(3), ll.FullyConnected(2, name="fc"), ll.Softmax(),
                      ll.Classification()])
    return X, Y, net


def _train(net, X, Y, solver="sgdm", **opts):
    base = dict(max_epochs=1, mini_batch_size=16, shuffle="never", verbose=False)
    base.update(opts)
    trained, info = ll.train_network(X, Y, net, ll.training_options(solver, **base))
    return trained.layer("fc"), info


@pytest.mark.parametrize("factor", [0.0, 2.0])
def test_learn_rate_factor_scales_the_step_of_that_learnable(factor):
    X, Y, net = _problem(16)
    W0 = net.layer("fc").weights.detach().clone()
    b0 = net.layer("fc").bias.detach().clone()
    plain, _ = _train(net, X, Y, momentum=0.0, l2_regularization=0.0, initial_learn_rate=0.1)
    net.layer("fc").set_learn_rate_factor("weights", factor)
    scaled, _ = _train(net, X, Y, momentum=0.0, l2_regularization=0.0, initial_learn_rate=0.1)
    step = plain.weights.detach() - W0
    assert float(step.abs().max()) > 1e-4
    np.testing.assert_allclose(scaled.weights.detach() - W0, factor * step, rtol=1e-5,
                               atol=1e-8)
    # the bias keeps factor 1
    np.testing.assert_allclose(scaled.bias.detach(), plain.bias.detach(), rtol=1e-6)
    assert not torch.equal(plain.bias.detach(), b0)


def test_piecewise_learning_rate_at_each_epoch_across_two_drop_periods():
    X, Y, net = _problem(32)
    _, info = _train(net, X, Y, max_epochs=6, initial_learn_rate=0.2,
                     learn_rate_schedule="piecewise", learn_rate_drop_factor=0.5,
                     learn_rate_drop_period=2)
    per_epoch = [info.base_learn_rate[info.epoch == e] for e in range(1, 7)]
    assert all(len(p) == 2 for p in per_epoch)
    got = [float(p[0]) for p in per_epoch]
    assert got == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
    assert all(p[0] == p[1] for p in per_epoch)


def _reference_steps(X, Y, W, b, steps, update):
    """Three mini-batches of 16 in order; the plain formula's autograd
    gradient at the current weights, then the hand-written update."""
    W, b = W.clone(), b.clone()
    state = {}
    for k in range(steps):
        xb, yb = X[16 * k:16 * (k + 1)], Y[16 * k:16 * (k + 1)]
        Wg, bg = W.clone().requires_grad_(), b.clone().requires_grad_()
        F.cross_entropy(F.linear(xb, Wg, bg), yb).backward()
        W = update("W", W, Wg.grad, k + 1, state)
        b = update("b", b, bg.grad, k + 1, state)
    return W, b


def _adam(b1, b2, lr, eps, l2):
    def update(key, w, g, t, state):
        g = g + l2 * w
        m = b1 * state.get(key + "m", 0) + (1 - b1) * g
        v = b2 * state.get(key + "v", 0) + (1 - b2) * g * g
        state[key + "m"], state[key + "v"] = m, v
        return w - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    return update


def test_three_adam_steps_by_hand_with_distinct_decay_factors():
    lr, b1, b2, eps, l2 = 0.05, 0.6, 0.85, 1e-6, 0.01
    X, Y, net = _problem()
    W0, b0 = net.layer("fc").weights.detach().clone(), net.layer("fc").bias.detach().clone()
    W, b = _reference_steps(X, Y, W0, b0, 3, _adam(b1, b2, lr, eps, l2))
    fc, info = _train(net, X, Y, "adam", initial_learn_rate=lr, gradient_decay_factor=b1,
                      squared_gradient_decay_factor=b2, epsilon=eps, l2_regularization=l2)
    assert info.iterations == 3
    np.testing.assert_allclose(fc.weights.detach(), W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fc.bias.detach(), b, rtol=1e-5, atol=1e-6)
    # the factors matter at these steps: with them swapped the weights differ
    W_swapped, _ = _reference_steps(X, Y, W0, b0, 3, _adam(b2, b1, lr, eps, l2))
    assert float((W_swapped - W).abs().max()) > 1e-3


def test_three_rmsprop_steps_by_hand():
    lr, rho, eps, l2 = 0.02, 0.6, 1e-6, 0.01
    X, Y, net = _problem()
    W0, b0 = net.layer("fc").weights.detach().clone(), net.layer("fc").bias.detach().clone()

    def rmsprop(key, w, g, t, state):
        g = g + l2 * w
        v = rho * state.get(key, 0) + (1 - rho) * g * g
        state[key] = v
        return w - lr * g / (v.sqrt() + eps)

    W, b = _reference_steps(X, Y, W0, b0, 3, rmsprop)
    # the gradient decay factor is Adam's alone: a distinct value must not matter
    fc, _ = _train(net, X, Y, "rmsprop", initial_learn_rate=lr, squared_gradient_decay_factor=rho,
                   gradient_decay_factor=0.3, epsilon=eps, l2_regularization=l2)
    np.testing.assert_allclose(fc.weights.detach(), W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fc.bias.detach(), b, rtol=1e-5, atol=1e-6)
