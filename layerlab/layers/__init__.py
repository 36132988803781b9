"""Built-in layers, one family per module. Every one is written with the
public :class:`layerlab.Layer` contract, exactly as a user would."""

from .activation import ELU, ReLU
from .convolution import Convolution2d
from .dense import FullyConnected
from .input import ImageInput
from .normalization import BatchNormalization
from .output import Classification, Softmax
from . import initializers
from .initializers import Gaussian

__all__ = ["ELU", "ReLU", "Convolution2d", "FullyConnected", "ImageInput",
           "BatchNormalization", "Classification", "Softmax", "initializers", "Gaussian"]
