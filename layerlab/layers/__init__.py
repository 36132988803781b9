"""Built-in layers, one family per module. Every one is written with the
public :class:`layerlab.Layer` contract, exactly as a user would."""

from .activation import CReLU, ELU, LeakyReLU, PReLU, ReLU, Sigmoid, Tanh
from .convolution import Convolution2d
from .dense import FullyConnected
from .dropout import Dropout, SpatialDropout
from .input import FeatureInput, ImageInput
from .maxout import FullyConnectedMaxout, Maxout
from .merge import Addition, Concatenation
from .module import ModuleLayer, register_module_class
from .normalization import BatchNormalization, LayerNormalization
from .output import Classification, Regression, Softmax
from .pooling import AveragePooling2d, GlobalAveragePooling2d, MaxPooling2d
from . import initializers
from .initializers import Gaussian

__all__ = ["ELU", "ReLU", "LeakyReLU", "PReLU", "CReLU", "Maxout", "FullyConnectedMaxout",
           "Tanh", "Sigmoid", "Convolution2d", "FullyConnected", "Dropout", "SpatialDropout",
           "ImageInput", "FeatureInput", "Addition", "Concatenation",
           "BatchNormalization", "LayerNormalization", "Classification", "Regression",
           "Softmax", "MaxPooling2d", "AveragePooling2d", "GlobalAveragePooling2d",
           "ModuleLayer", "register_module_class", "initializers", "Gaussian"]
