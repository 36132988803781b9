"""Residual blocks (He et al. 2016) as taught in the lecture "Going deeper".

A block is added to a layer list like one layer, so a residual network for
the 28x28 digits is a few lines::

    import layerlab as ll
    layers = ll.LayerGraph([
        ll.ImageInput((1, 28, 28)),
        ll.Convolution2d(3, 8, stride=2, padding=1),        # 8 channels, 14x14
        ll.BatchNormalization(), ll.ReLU(),
        *[ll.residual_block(8) for _ in range(10)],
        ll.FullyConnected(10), ll.Softmax(), ll.Classification()])
    net, info = ll.train_network(X, Y, layers, options)

A block that changes the size adds a projection on the skip:
``ll.residual_block(8, 16, stride=2)``. The lecture's head (global average
pooling, ReLU, fully connected) is ``ll.GlobalAveragePooling2d(), ll.ReLU(),
ll.FullyConnected(10)``.
"""

from __future__ import annotations

from ..errors import NetworkError
from ..layers.activation import ReLU
from ..layers.convolution import Convolution2d
from ..layers.merge import Addition
from ..layers.normalization import BatchNormalization
from ..layers._util import positive_int
from .graph import Block

__all__ = ["residual_block"]


def residual_block(in_channels: int, out_channels: int | None = None, stride: int = 1,
                   filter_size: int = 3, weights_initializer="glorot",
                   zero_init_residual: bool = False, batch_norm_backward: str = "native",
                   name: str | None = None) -> Block:
    r"""A residual block: ``Z = ReLU(BN(conv(ReLU(BN(conv(X))))) + S(X))``.

    The main path is conv (``filter_size``, padding ``(k-1)//2``, ``stride``),
    batch normalization, ReLU, conv (stride 1), batch normalization; the skip
    ``S`` is the identity, or, when the size changes (``stride > 1`` or
    ``out_channels != in_channels``), a projection: a 1x1 convolution with
    ``stride`` followed by batch normalization. The sum goes through a ReLU.

    Args:
        in_channels: ``C``, the channels of the block's input.
        out_channels: ``F``, default ``C``.
        stride: the first convolution's (and the projection's) stride, default 1.
        filter_size: odd ``k``, default 3.
        weights_initializer: for the convolutions, default ``"glorot"``
            (``"he"`` is the ResNet paper's).
        zero_init_residual: start the second batch normalization's scale
            (gamma) at 0, so that the block starts as ``ReLU(S(X))`` (Goyal
            et al. 2017): an option for deep stacks, where every block with
            gamma 1 adds a unit-variance branch. Default False: the lecture's
            plain initialization (gamma 1), which a small residual network
            trains far faster with (issue 17: 0.26-0.42 vs 0.11-0.15 test
            accuracy after 12 epochs on 2,560 digits, 3 seeds).
        batch_norm_backward: ``"native"`` or ``"formula"``, see
            :class:`~layerlab.layers.normalization.BatchNormalization`.
        name: the block's name; its layers are named ``"<name>_conv1"``,
            ``"<name>_bn1"``, ``"<name>_relu1"``, ``"<name>_conv2"``,
            ``"<name>_bn2"``, (``"<name>_proj"``, ``"<name>_projbn"``),
            ``"<name>_add"``, ``"<name>_relu"``. Default ``"res_<k>"``.

    Shape: ``(N, C, H, W)`` to ``(N, F, H', W')`` with ``H' = ceil(H / stride)``.

    Returns:
        a :class:`~layerlab.network.graph.Block`: put it in the list given to
        :class:`~layerlab.LayerGraph` like a layer, or add it with
        ``graph.add_block(block, after="layer_name")``.
    """
    c = positive_int(in_channels, "residual_block in_channels")
    f = c if out_channels is None else positive_int(out_channels, "residual_block out_channels")
    s = positive_int(stride, "residual_block stride")
    k = positive_int(filter_size, "residual_block filter_size")
    if k % 2 == 0:
        raise NetworkError(f"residual_block filter_size: expected an odd size so that the "
                           f"skip and the main path agree, got {filter_size!r}")

    def conv(size, channels_in, stride_):
        return Convolution2d(size, f, stride=stride_, padding=(size - 1) // 2,
                             num_channels=channels_in, weights_initializer=weights_initializer)

    def bn(scale="ones"):
        return BatchNormalization(num_channels=f, backward=batch_norm_backward,
                                  scale_initializer=scale)

    layers = {"conv1": conv(k, c, s), "bn1": bn(), "relu1": ReLU(),
              "conv2": conv(k, f, 1), "bn2": bn("zeros" if zero_init_residual else "ones")}
    connections = [("conv1", "bn1"), ("bn1", "relu1"), ("relu1", "conv2"), ("conv2", "bn2"),
                   ("bn2", "add/in1")]
    entries = ["conv1"]
    if s != 1 or f != c:
        layers.update(proj=conv(1, c, s), projbn=bn())
        connections += [("proj", "projbn"), ("projbn", "add/in2")]
        entries.append("proj")
    else:
        entries.append("add/in2")
    layers.update(add=Addition(2), relu=ReLU())
    connections.append(("add", "relu"))
    return Block(layers=layers, connections=connections, entries=entries, exit="relu",
                 name=name, default_name="res")
