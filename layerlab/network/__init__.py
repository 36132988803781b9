"""Networks: layer graphs and runnable networks."""

from .graph import LayerGraph
from .network import Network, as_network

__all__ = ["LayerGraph", "Network", "as_network"]
