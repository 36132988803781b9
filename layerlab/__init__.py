"""layerlab: define your own neural-network layer, check it, train it and
compare it honestly, on PyTorch.

Quick tour::

    import layerlab as ll
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20),
              ll.BatchNormalization(), ll.ELU(20), ll.FullyConnected(10),
              ll.Softmax(), ll.Classification()]
    X, Y, _ = ll.datasets.digits_train()
    net, info = ll.train_network(X, Y, layers, ll.training_options("sgdm"))
    labels = ll.classify(net, X)
"""

from .errors import (DataError, LayerError, LayerlabError, NetworkError, OptionError,
                     PersistenceError, TrainingError)
from .layer import InputLayer, Layer, Learnable, OutputLayer, State
from .layers import (BatchNormalization, Classification, Convolution2d, ELU, FullyConnected,
                     Gaussian, ImageInput, ReLU, Softmax, initializers)
from .layers import (Addition, AveragePooling2d, Concatenation, CReLU, Dropout, FeatureInput,
                     FullyConnectedMaxout, GlobalAveragePooling2d, LayerNormalization,
                     LeakyReLU, Maxout, MaxPooling2d, PReLU, Regression, Sigmoid,
                     SpatialDropout, Tanh)
from .layers import ModuleLayer
from .network import Block, LayerGraph, Network, residual_block, summary
from .training import TrainingInfo, TrainingOptions, train_network, training_options
from .inference import classify, predict
from .persistence import export_onnx, load, save
from .checking import CheckReport, check_function, check_layer
from . import testing
from .inspection import activations
from .training.plots import plot_training
from . import datasets
from . import experiments

__version__ = "0.1.0"

__all__ = [
    "Layer", "Learnable", "State", "InputLayer", "OutputLayer",
    "BatchNormalization", "Classification", "Convolution2d", "ELU", "FullyConnected",
    "Gaussian", "ImageInput", "ReLU", "Softmax", "initializers",
    "Addition", "AveragePooling2d", "Concatenation", "CReLU", "Dropout", "FeatureInput",
    "FullyConnectedMaxout", "GlobalAveragePooling2d", "LayerNormalization", "LeakyReLU",
    "Maxout", "MaxPooling2d", "PReLU", "Regression", "Sigmoid", "SpatialDropout", "Tanh",
    "Block", "residual_block", "summary",
    "LayerGraph", "Network", "train_network", "training_options", "TrainingOptions",
    "TrainingInfo", "classify", "predict", "datasets", "experiments",
    "LayerlabError", "LayerError", "NetworkError", "OptionError", "DataError",
    "TrainingError", "PersistenceError",
    "save", "load", "export_onnx", "activations", "plot_training",
    "check_layer", "CheckReport",
    "ModuleLayer",
]
