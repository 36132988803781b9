"""Networks: layer graphs and runnable networks."""

from .graph import Block, LayerGraph
from .network import Network, as_network
from .residual import residual_block
from .summary import Summary, summary

__all__ = ["LayerGraph", "Block", "Network", "as_network", "residual_block", "summary",
           "Summary"]
