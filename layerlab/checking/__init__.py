"""Checking a layer before it trains: :func:`check_layer`, MATLAB's
``checkLayer`` for layerlab layers.

Modules: :mod:`.check_layer` (the entry point and the list of tests),
:mod:`.checks_basic` (interface: signatures, runs, sizes, types, device),
:mod:`.gradients` (finite differences), :mod:`.checks_behaviour`
(training vs prediction, observations, freezing, state, saving),
:mod:`.harness` (running the layer as training does), :mod:`.testdata`
(Halton test data away from kinks), :mod:`.report` (the results),
:mod:`.command` (``layerlab check``).
"""

from .check_layer import TEST_NAMES, check_layer, check_network_layers, is_user_layer
from .report import CheckReport, CheckResult, LayerCheckError

__all__ = ["check_layer", "CheckReport", "CheckResult", "LayerCheckError", "TEST_NAMES",
           "check_network_layers", "is_user_layer"]
