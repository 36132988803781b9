"""Checking a layer before it trains: :func:`check_layer`, MATLAB's
``checkLayer`` and the tests of PyTorch's gradcheck, OpInfo and JAX's
check_grads, for layerlab layers, any ``torch.nn.Module``, and (with
:func:`check_function`) any function of tensors.

Modules: :mod:`.check_layer` (the entry points and the list of tests),
:mod:`.checks_basic` (interface: signatures, runs, sizes, types, device),
:mod:`.gradients` (finite differences, first and second derivatives),
:mod:`.checks_repeat` (inputs unchanged, a second backward, determinism),
:mod:`.checks_behaviour` (training vs prediction, independent observations,
freezing, state), :mod:`.checks_robustness` (extreme inputs, memory
layouts, batch sizes, half precision), :mod:`.checks_torch` (vmap,
torch.compile), :mod:`.checks_saving` (save/load, in a new process too),
:mod:`.harness` (running the layer as training does), :mod:`.contract`
(what the checks read of the layer contract and the bridge),
:mod:`.subjects` (modules and functions as layers), :mod:`.testdata`
(Halton test data away from kinks), :mod:`.report` (the results),
:mod:`.command` (``layerlab check``).
"""

from .check_layer import (FUNCTION_TESTS, TEST_NAMES, TRAINING_TESTS, check_function,
                          check_layer, check_network_layers, is_user_layer)
from .report import CheckReport, CheckResult, LayerCheckError

__all__ = ["check_layer", "check_function", "CheckReport", "CheckResult", "LayerCheckError",
           "TEST_NAMES", "TRAINING_TESTS", "FUNCTION_TESTS", "check_network_layers",
           "is_user_layer"]
