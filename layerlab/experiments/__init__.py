"""Studies: compare configurations over repeated runs, with statistics.

:class:`Study` is the machinery (configurations x repeats x metrics, a
progress display, a CSV with one row per run, paired tests across seeds and a
Markdown report with PNG figures). The seeds' experiments are built on it and
run from the command line with ``layerlab experiment NAME``:

- ``elu-batchnorm``: the seed network with and without batch normalization,
  learnable and fixed-alpha ELU, and ReLU as the ELU paper's contrast;
- ``disc-init``: the lecture's deep MLP on the disc set, test error against
  the initial weights' standard deviation, plain, with batch normalization
  and with residual connections;
- ``deep-mlp-batchnorm``: 10 x (fully connected, batch normalization,
  activation) on the digits, against the same without batch normalization;
- ``activations``: the built-in activations and their derivatives.

Each study module provides ``make_study(quick=False) -> Study``. A study's
runs can run side by side in worker processes or as Ray tasks
(``Study.run(workers=N)``, ``cluster="ray"``; :mod:`.runner`), and its
configurations can be a sweep (:func:`grid`, :func:`random_sample`).
"""

from __future__ import annotations

import importlib

from .study import Comparison, Metric, Study, StudyResult, holm, paired_test, wilcoxon_min_p
from .sweep import IntUniform, LogUniform, Uniform, grid, random_sample

__all__ = ["Study", "StudyResult", "Metric", "Comparison", "paired_test", "wilcoxon_min_p",
           "holm", "STUDIES", "make_study",
           "grid", "random_sample", "Uniform", "LogUniform", "IntUniform"]

# study name -> (module, one-line description)
STUDIES = {
    "elu-batchnorm": ("layerlab.experiments.elu_batchnorm",
                      "seed network: BN + learnable ELU vs no BN vs fixed alpha, and ReLU"),
    "disc-init": ("layerlab.experiments.disc_init",
                  "deep MLP on the disc: test error vs initial weight std, BN and residual"),
    "deep-mlp-batchnorm": ("layerlab.experiments.deep_mlp_batchnorm",
                           "10 x (FC, BN, activation) on the digits vs no BN"),
    "activations": ("layerlab.experiments.activations",
                    "the built-in activations and their derivatives"),
}


def make_study(name: str, quick: bool = False) -> Study:
    """The named study (one of :data:`STUDIES`), in its quick form if asked."""
    from ..errors import OptionError
    if name not in STUDIES:
        raise OptionError(f"unknown study {name!r}; the studies are {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name][0]).make_study(quick=quick)
