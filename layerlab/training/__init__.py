"""Training: options, solvers, the training loop and its table."""

from .options import TrainingOptions, training_options
from .trainer import TrainingInfo, train_network

__all__ = ["TrainingOptions", "training_options", "TrainingInfo", "train_network"]
