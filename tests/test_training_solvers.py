"""Each solver's first step against a hand computation, and gradient clipping."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.training.clipping import clip_gradients


def _problem():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(16, 3, generator=g)
    Y = torch.tensor([0, 1] * 8)
    net = ll.Network([ll.FeatureInput(3), ll.FullyConnected(2, name="fc"), ll.Softmax(),
                      ll.Classification()])
    return X, Y, net


def _one_step(solver, **opts):
    X, Y, net = _problem()
    W0 = net.layer("fc").weights.detach().clone()
    b0 = net.layer("fc").bias.detach().clone()
    options = ll.training_options(solver, max_epochs=1, mini_batch_size=16, shuffle="never",
                                  verbose=False, **opts)
    trained, _ = ll.train_network(X, Y, net, options)
    # the reference gradient: PyTorch's autograd on the plain formula
    W, b = W0.clone().requires_grad_(), b0.clone().requires_grad_()
    F.cross_entropy(F.linear(X, W, b), Y).backward()
    return (W0, W.grad), (b0, b.grad), trained.layer("fc")


def test_sgdm_first_step_matches_hand_computation():
    lr, l2 = 0.1, 0.01
    (W0, gW), (b0, gb), fc = _one_step("sgdm", initial_learn_rate=lr, l2_regularization=l2)
    # v = m*0 - lr*(g + l2*W); W <- W + v
    np.testing.assert_allclose(fc.weights.detach(), W0 - lr * (gW + l2 * W0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fc.bias.detach(), b0 - lr * (gb + l2 * b0), rtol=1e-6, atol=1e-7)


def test_adam_first_step_matches_hand_computation():
    lr, b1, b2, eps, l2 = 0.01, 0.8, 0.95, 1e-3, 0.001
    (W0, gW), _, fc = _one_step("adam", initial_learn_rate=lr, gradient_decay_factor=b1,
                                squared_gradient_decay_factor=b2, epsilon=eps,
                                l2_regularization=l2)
    g = gW + l2 * W0
    m_hat = (1 - b1) * g / (1 - b1)
    v_hat = (1 - b2) * g ** 2 / (1 - b2)
    want = W0 - lr * m_hat / (v_hat.sqrt() + eps)
    np.testing.assert_allclose(fc.weights.detach(), want, rtol=1e-5, atol=1e-7)


def test_rmsprop_first_step_matches_hand_computation():
    lr, rho, eps, l2 = 0.01, 0.7, 1e-4, 0.001
    (W0, gW), _, fc = _one_step("rmsprop", initial_learn_rate=lr,
                                squared_gradient_decay_factor=rho, epsilon=eps,
                                l2_regularization=l2)
    g = gW + l2 * W0
    v = (1 - rho) * g ** 2
    want = W0 - lr * g / (v.sqrt() + eps)
    np.testing.assert_allclose(fc.weights.detach(), want, rtol=1e-5, atol=1e-7)


def test_solver_defaults_are_matlabs():
    a = ll.training_options("adam")
    r = ll.training_options("rmsprop")
    s = ll.training_options("sgdm")
    assert (a.initial_learn_rate, a.squared_gradient_decay_factor, a.epsilon) == (0.001, 0.999, 1e-8)
    assert (r.initial_learn_rate, r.squared_gradient_decay_factor) == (0.001, 0.9)
    assert (s.initial_learn_rate, s.momentum, s.gradient_threshold) == (0.01, 0.9, math.inf)
    assert (s.validation_frequency, s.validation_patience) == (50, math.inf)


def _grads():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([3.0, 4.0])          # norm 5
    b.grad = torch.tensor([0.0, -1.0, 0.5])    # norm sqrt(1.25)
    return a, b


def test_clipping_l2norm_rescales_each_parameter_on_its_own():
    a, b = _grads()
    clip_gradients([a, b], 2.0, "l2norm")
    np.testing.assert_allclose(a.grad, [3 * 2 / 5, 4 * 2 / 5], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [0.0, -1.0, 0.5])  # below the threshold: untouched


def test_clipping_global_l2norm_rescales_all_together():
    a, b = _grads()
    total = math.sqrt(25 + 1.25)
    clip_gradients([a, b], 2.0, "global-l2norm")
    np.testing.assert_allclose(a.grad, np.array([3.0, 4.0]) * 2 / total, rtol=1e-6)
    np.testing.assert_allclose(b.grad, np.array([0.0, -1.0, 0.5]) * 2 / total, rtol=1e-6)


def test_clipping_absolute_value_clips_elements():
    a, b = _grads()
    clip_gradients([a, b], 0.75, "absolute-value")
    np.testing.assert_allclose(a.grad, [0.75, 0.75])
    np.testing.assert_allclose(b.grad, [0.0, -0.75, 0.5])


def test_gradient_threshold_is_applied_in_training():
    lr, t = 0.5, 1e-3
    (W0, gW), _, fc = _one_step("sgdm", initial_learn_rate=lr, l2_regularization=0.0,
                                gradient_threshold=t, gradient_threshold_method="l2norm")
    want = W0 - lr * gW * (t / gW.norm())
    np.testing.assert_allclose(fc.weights.detach(), want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("bad", [dict(gradient_threshold=0), dict(gradient_threshold_method="l1"),
                                 dict(validation_patience=0.5), dict(plots="yes"),
                                 dict(output_fn=3), dict(output_network="best")])
def test_bad_options_raise_option_error_naming_them(bad):
    with pytest.raises(ll.OptionError, match=list(bad)[0]):
        ll.training_options("sgdm", **bad)
