"""Training: options, solvers, the training loop and its table."""

from .options import TrainingOptions, training_options
from .trainer import TrainingInfo, train_network
from .callbacks import IterationInfo
from .plots import plot_training

__all__ = ["TrainingOptions", "training_options", "TrainingInfo", "train_network",
           "IterationInfo", "plot_training"]
