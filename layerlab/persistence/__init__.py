"""Saving and loading networks and training checkpoints, and ONNX export.

Files are safetensors files: the tensors (weights and normalization
statistics) plus a JSON description of the architecture in the file's
metadata. Loading never unpickles and never runs code from the file.
"""

from .network_file import load, save
from .onnx_export import export_onnx

__all__ = ["save", "load", "export_onnx"]
