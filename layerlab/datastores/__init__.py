"""Data for training and inference beyond in-memory arrays: data sources
(memmaps, array-likes, torch Datasets and DataLoaders), image datastores
and augmentation, MATLAB's ``imageDatastore``, ``augmentedImageDatastore``
and ``imageDataAugmenter``."""

from .sources import DataSource, as_data_source, is_data_source
from .image import ImageDatastore
from .augment import AugmentedImageDatastore, ImageDataAugmenter

__all__ = ["DataSource", "as_data_source", "is_data_source", "ImageDatastore",
           "AugmentedImageDatastore", "ImageDataAugmenter"]
