"""Seeing inside training: activation and gradient amplitudes layer by layer.

``training_options(monitor=("activations", "gradients"), monitor_frequency=50)``
records them during training (``info.layer_statistics``);
:func:`layer_statistics` measures one mini-batch without training;
:func:`plot_layer_statistics` draws them against depth and iterations.
"""

from .plots import plot_layer_statistics
from .probe import layer_statistics
from .statistics import (LAYER_STATISTICS, LEARNABLE_STATISTICS, STATISTIC_GROUPS,
                         LayerStatistics, StatisticsRecorder, check_frequency,
                         resolve_statistics)

__all__ = ["layer_statistics", "plot_layer_statistics", "LayerStatistics",
           "StatisticsRecorder", "resolve_statistics", "check_frequency",
           "LAYER_STATISTICS", "LEARNABLE_STATISTICS", "STATISTIC_GROUPS"]
