"""layerlab: define your own neural-network layer, check it, train it and
compare it honestly, on PyTorch.

Quick tour::

    import layerlab as ll
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20),
              ll.BatchNormalization(), ll.ELU(20), ll.FullyConnected(10),
              ll.Softmax(), ll.Classification()]
    X, Y, _ = ll.datasets.digits_train()
    net, info = ll.train_network(X, Y, layers, ll.training_options("sgdm"))
    labels = ll.classify(net, X)                  # a NumPy array of labels
"""

import importlib as _importlib

__version__ = "0.1.0"

# the layer contract: what a user's layer is written with
from .layer import InputLayer, Layer, Learnable, OutputLayer, State
# built-in layers and initializers
from .layers import (BatchNormalization, Classification, Convolution2d, ELU, FullyConnected,
                     Gaussian, ImageInput, ReLU, Softmax, initializers)
from .layers import (Addition, AveragePooling2d, Concatenation, CReLU, Dropout, FeatureInput,
                     FullyConnectedMaxout, GlobalAveragePooling2d, LayerNormalization,
                     LeakyReLU, Maxout, MaxPooling2d, PReLU, Regression, Sigmoid,
                     SpatialDropout, Tanh)
# any torch.nn.Module as a layer
from .layers import ModuleLayer, register_module_class
# networks and layer graphs
from .network import Block, LayerGraph, Network, residual_block, summary
# checking a layer (and any PyTorch module or function); a pytest helper
from .checking import CheckReport, LayerCheckError, check_function, check_layer
from . import testing
# training
from .training import (IterationInfo, TrainingInfo, TrainingOptions, train_network,
                       training_options)
from .training.plots import plot_training
# using a trained network
from .inference import classify, predict
from .inspection import activations
# files
from .persistence import export_onnx, load, save
# errors
from .errors import (DataError, LayerError, LayerlabError, NetworkError, OptionError,
                     PersistenceError, TrainingError)
# data sets (generated, never downloaded)
from . import datasets
# data sources: folders of images, augmentation (arrays, memmaps, Datasets and
# DataLoaders need no wrapper)
from .datastores import AugmentedImageDatastore, ImageDataAugmenter, ImageDatastore
# trainnet (MATLAB's current workflow): losses, metrics, schedules, logs
from .training.trainnet import trainnet
from .training.evaluation import minibatchpredict, scores2label, testnet
from .training.runlog import write_info
from .training import schedules
# seeing inside training: per-layer amplitudes
from .monitoring import layer_statistics, plot_layer_statistics

__all__ = [
    # the layer contract
    "Layer", "Learnable", "State", "InputLayer", "OutputLayer",
    # built-in layers: input, convolution and dense, activations, dropout,
    # normalization, pooling, merging, output; initializers
    "ImageInput", "FeatureInput",
    "Convolution2d", "FullyConnected", "FullyConnectedMaxout",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "CReLU", "Maxout", "Tanh", "Sigmoid",
    "Dropout", "SpatialDropout",
    "BatchNormalization", "LayerNormalization",
    "MaxPooling2d", "AveragePooling2d", "GlobalAveragePooling2d",
    "Addition", "Concatenation",
    "Softmax", "Classification", "Regression",
    "initializers", "Gaussian",
    # any torch.nn.Module as a layer
    "ModuleLayer", "register_module_class",
    # networks and layer graphs
    "LayerGraph", "Network", "Block", "residual_block", "summary",
    # checking a layer
    "check_layer", "check_function", "CheckReport", "LayerCheckError", "testing",
    # training
    "training_options", "TrainingOptions", "train_network", "TrainingInfo", "IterationInfo",
    "plot_training",
    # using a trained network
    "classify", "predict", "activations",
    # files
    "save", "load", "export_onnx",
    # errors
    "LayerlabError", "LayerError", "NetworkError", "OptionError", "DataError",
    "TrainingError", "PersistenceError",
    # data sources
    "ImageDatastore", "AugmentedImageDatastore", "ImageDataAugmenter",
    # trainnet, metrics and logs
    "trainnet", "minibatchpredict", "scores2label", "testnet", "write_info", "schedules",
    # seeing inside training
    "layer_statistics", "plot_layer_statistics",
    # data sets and studies
    "datasets", "experiments",
]

# imported on first use: the studies pull in SciPy's statistics and their
# modules import layerlab themselves
_LAZY_MODULES = ("experiments",)


def __getattr__(name):
    if name in _LAZY_MODULES:
        module = _importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))
