"""Saving and loading networks and training checkpoints, and ONNX export.

Files are safetensors files: the tensors (weights and normalization
statistics) plus a JSON description of the architecture in the file's
metadata. A file is untrusted input: loading never unpickles, never imports
a module and never calls anything the file names; :mod:`.registry` lists
what a file can make layerlab build (``register_layer_class`` adds
layerlab's own wrappers), :mod:`.validate` checks the rest.
"""

from .network_file import load, save
from .onnx_export import export_onnx
from .registry import register_layer_class

__all__ = ["save", "load", "export_onnx", "register_layer_class"]
