"""The layer contract: what a user (and every built-in layer) writes.

A layer is a class derived from :class:`Layer`, modelled on MATLAB's
``nnet.layer.Layer`` template:

.. code-block:: python

    class MyELU(layerlab.Layer):
        def __init__(self, num_channels, learnable=True, name=None):
            super().__init__(name=name, type="Exponential Linear Unit")
            self.alpha = layerlab.Learnable(draw=lambda: torch.rand(num_channels),
                                            learnable=learnable)

        def predict(self, X):                       # required: inference
            a = self.alpha.view(-1, *[1] * (X.dim() - 2))
            return X.clamp(min=0) + a * (X.clamp(max=0).exp() - 1)

        def forward(self, X):                       # optional: training
            memory = X.clamp(max=0).exp() - 1
            ...
            return Z, memory

        def backward(self, X, Z, dLdZ, memory):     # optional
            return dLdX, dLdalpha                   # one per Learnable

Tensors are channel-first as in PyTorch: images ``(N, C, H, W)``, features
``(N, C)``. A :class:`Layer` is a :class:`torch.nn.Module`, so a layer's
learnables are ordinary ``torch.nn.Parameter`` objects (``self.alpha`` reads
as a tensor; a ``torch.nn.Parameter`` or a submodule assigned to the layer is
a learnable too), and devices, ``state_dict``, hooks, ``torch.func``,
``torch.compile`` and DistributedDataParallel work as for any PyTorch
module. ``layer(X)`` returns ``Z`` (the Module's ``forward``); the
``forward`` written above becomes ``layer.training_forward`` (see
:class:`Layer`, "forward and nn.Module"). A ``backward`` written with
differentiable PyTorch ops also gives second derivatives.

Learnability is a run-time choice: ``Learnable(value, learnable=False)``,
``layer.freeze("alpha")`` and ``layer.unfreeze("alpha")``; the layer class
stays the same and ``backward`` keeps returning one derivative per
declared learnable (``None`` is accepted for one that is not needed: see
:meth:`Layer.needs_gradient`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np
import torch

from .autograd_bridge import run_layer
from .errors import LayerError

__all__ = ["Layer", "Learnable", "State", "InputLayer", "OutputLayer"]


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """Convert ``value`` (tensor, NumPy array, number or nested list) to a
    floating tensor, float32 unless it is already float64."""
    if isinstance(value, torch.Tensor):
        t = value.detach().clone()
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise LayerError(f"{what}: expected a tensor, array or number, "
                             f"got {type(value).__name__}") from exc
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    elif t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t


def _modules_in_order(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``module`` and its submodules in ``named_modules``' pre-order, each
    with its name prefix (``"a.b."``): ``nn.Module``'s generic member walk
    is several times slower, and training asks for the learnables of layers
    of layers (a fused chain) every step."""
    out: list[tuple[str, torch.nn.Module]] = []
    stack: list[tuple[str, torch.nn.Module]] = [("", module)]
    while stack:
        prefix, m = stack.pop()
        out.append((prefix, m))
        if m._modules:
            # children pushed last-first, so that they are visited in order
            stack += [(f"{prefix}{name}.", sub) for name, sub in reversed(m._modules.items())
                      if sub is not None]
    return out


def _named_parameters(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``list(module.named_parameters())``, the same names in the same order.
    A parameter or module met twice (shared) leaves it to
    ``named_parameters``, which lists each once."""
    out = [(prefix + k, p) for prefix, m in _modules_in_order(module)
           for k, p in m._parameters.items() if p is not None]
    if len({id(p) for _, p in out}) != len(out):
        return list(module.named_parameters())
    return out


def _parameter_values(module: torch.nn.Module) -> list[torch.Tensor]:
    """``[p for _, p in module.named_parameters()]`` without the names."""
    out = [p for _, m in _modules_in_order(module) for p in m._parameters.values()
           if p is not None]
    if len(set(map(id, out))) != len(out):
        return [p for _, p in module.named_parameters()]
    return out


@dataclasses.dataclass
class Learnable:
    """Declares a learnable parameter: ``self.w = Learnable(value, ...)``.

    Args:
        value: initial value (tensor, array or number). The layer's own
            constructor initialises it, as in MATLAB; training only moves it
            to the training device.
        learnable: whether training updates it. Changeable at run time with
            :meth:`Layer.freeze` / :meth:`Layer.unfreeze`.
        learn_rate_factor: multiplies the global learning rate for this
            parameter (MATLAB's ``setLearnRateFactor``).
        l2_factor: multiplies the global L2 regularization for this
            parameter (MATLAB's ``setL2Factor``).
        draw: for a random initial value, the function that draws it
            (``lambda: torch.rand(c)``). The value is drawn now, and drawn
            again when a network is built from the layer (under
            ``training_options(seed=...)`` when ``train_network`` builds it,
            or after your ``torch.manual_seed``), unless it was set since
            (assigned, changed in place, or loaded with ``load_state_dict``): so a seeded run
            is reproducible even when the layers are constructed anew.
            ``value`` may be omitted when ``draw`` is given.

    Examples::

        self.alpha = Learnable(draw=lambda: torch.rand(num_channels))
    """

    value: Any = None
    learnable: bool = True
    learn_rate_factor: float = 1.0
    l2_factor: float = 1.0
    draw: Any = None


@dataclasses.dataclass
class State:
    """Declares non-learnable state saved with the layer, such as batch
    normalization's running statistics: ``self.running_mean = State(zeros)``.

    A layer updates its state in ``forward`` (training) by assigning a new
    tensor, ``self.running_mean = new``, or in place; ``predict`` only reads
    it.
    """

    value: Any


@dataclasses.dataclass(frozen=True)
class _Factors:
    learn_rate_factor: float
    l2_factor: float


_UNIT_FACTORS = _Factors(1.0, 1.0)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-\.]*$")


class Layer(torch.nn.Module):
    """Base class of every layer, built-in or user-defined.

    Subclasses implement:

    * ``predict(self, *X) -> Z`` (required): the computation at inference.
    * ``forward(self, *X) -> (Z, memory)`` (optional): the computation at
      training time; defaults to ``(predict(*X), None)``.
    * ``backward(self, *X, *Z, *dLdZ, memory) -> (*dLdX, *dLdW)``
      (optional): a hand-written derivative. ``dLdX`` has the size of ``X``
      and each ``dLdW`` the size of its parameter, in the order the
      learnables were declared, summed over the mini-batch. Without it,
      PyTorch's autograd differentiates ``forward``.
    * ``initialize(self, input_sizes)`` (optional): called once with the
      size of one observation of each input (no batch dimension) before the
      layer first runs; create learnables that depend on the input size here
      (e.g. a convolution's number of input channels).

    Class attributes a layer may set:

    * ``num_inputs`` / ``num_outputs`` (default 1): layers with several
      inputs take them as positional arguments; several outputs are returned
      as a tuple.
    * ``differs_in_training`` (default False): ``forward`` intentionally
      differs from ``predict`` (dropout, batch normalization).
    * ``couples_observations`` (default False): an observation's output
      depends on the other observations in the batch (batch normalization
      in training).
    * ``is_stochastic`` (default False): training output is random.
    * ``backward_uses`` (default ``("X", "Z", "memory")``): what training
      keeps for ``backward``. A layer whose backward reads neither its input
      nor its output leaves them out (e.g. ``("X", "memory")``) so that they
      are not kept alive for the backward pass; backward then receives
      ``None`` in their place. It may be a property, to decide per instance
      (a fixed-scale LeakyReLU keeps a 1-byte mask, a learnable one X).
    * ``default_name``: the base of the automatic name a network gives an
      unnamed layer ("conv" -> "conv_1"); default: the class name in
      snake case.
    * ``backward_is_differentiable`` (default True): ``backward`` is written
      with differentiable PyTorch ops, so second derivatives (gradient
      penalties, Hessian-vector products, ``torch.func.grad`` of a
      gradient) go through it: the bridge reruns ``forward`` from the kept
      X with autograd on and differentiates ``backward``. Set it to False
      for a backward that is not (NumPy, ``.item()``, detached results):
      second derivatives then raise a clear :class:`LayerError` instead of
      giving a wrong number.
    * ``capturable`` (default False): ``predict``, ``forward`` and
      ``backward`` are pure tensor computations: they never read a tensor's
      value on the host (``.item()``, ``bool(t)``, ``.cpu()``, NumPy), draw
      no host-side random numbers, and change no Python state from call to
      call (counters, lists; in-place updates of a :class:`State` tensor are
      fine), and their control flow depends on sizes only. Training on a
      GPU then records a whole training step once as a CUDA graph and
      replays it each iteration (one launch instead of hundreds; see
      ``training_options(cuda_graphs=...)``). A replay re-runs only the
      recorded GPU work, so a layer that is not capturable but says it is
      would silently repeat the first step's Python decisions; the default
      is therefore False, and every built-in layer sets it to True.
    * ``use_autograd`` (default False; also per instance,
      ``layer.use_autograd = True``): ignore the hand-written ``backward``
      and let autograd differentiate ``forward``. Forward-mode AD
      (``torch.func.jvp``, ``torch.autograd.forward_ad``) does so by itself:
      it cannot go through a hand-written backward.

    **forward and nn.Module.** ``torch.nn.Module.forward`` returns the
    output; the seed's (MATLAB's) ``forward`` returns ``(Z, memory)``. The
    base class resolves the clash when a layer class is created: the
    ``forward`` a class defines becomes its :meth:`training_forward`, and
    :meth:`forward` stays the Module's: ``layer(X)`` (and ``layer.forward(X)``)
    returns ``Z`` from ``training_forward`` in training mode and from
    ``predict`` in inference mode (``layer.train()`` / ``layer.eval()``),
    through ``torch.nn.Module.__call__``, so forward and forward-pre hooks,
    full backward hooks, ``torch.compile`` and ``torch.func`` see the layer
    as any module. Call ``layer.training_forward(X)`` for ``(Z, memory)``;
    in a subclass, ``super().training_forward(X)`` (not
    ``super().forward(X)``, which is the Module's) reaches the parent's.

    **Gradient names.** In messages and in ``check_layer``'s report the
    derivatives ``backward`` returns are named as in MATLAB: ``dLdX`` (or
    ``dLdX1``, ``dLdX2``, ... for several inputs) and ``dLd<name>`` with the
    learnable's name exactly as declared (``dLdalpha`` for ``self.alpha``,
    ``dLdscale`` for ``self.scale``).

    **Random initial values.** Draw them when the network is built, not
    when the layer is constructed, so that ``training_options(seed=...)``
    makes a run reproducible even when the layers are constructed anew:
    declare ``Learnable(draw=lambda: torch.rand(c))`` (drawn at construction
    and drawn again, once, when a network is built), or create the learnable
    in :meth:`initialize`, which the network calls when it is built (as the
    built-in convolution does once it knows its input channels).
    ``train_network`` seeds before it builds the network from a list of
    layers.
    """

    num_inputs: int = 1
    num_outputs: int = 1
    differs_in_training: bool = False
    couples_observations: bool = False
    is_stochastic: bool = False
    backward_uses: tuple[str, ...] = ("X", "Z", "memory")
    backward_is_differentiable: bool = True
    capturable: bool = False
    use_autograd: bool = False

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        # Initialise the Module machinery before the subclass' __init__ runs,
        # so a user layer that assigns Learnables before (or without)
        # calling super().__init__() still works.
        torch.nn.Module.__init__(self)
        object.__setattr__(self, "_factors", {})
        object.__setattr__(self, "_learnable_order", [])
        object.__setattr__(self, "_draws", {})
        object.__setattr__(self, "_needs", None)
        object.__setattr__(self, "name", "")
        object.__setattr__(self, "description", "")
        return self

    def __init__(self, name: str | None = None, description: str | None = None,
                 type: str | None = None):  # noqa: A002 - MATLAB's name
        if name:
            self.name = name
        if description is not None:
            self.description = description
        if type is not None:
            self.type = type

    # ------------------------------------------------------------------
    # identity
    # ------------------------------------------------------------------
    @property
    def type(self) -> str:  # type: ignore[override]
        """A short human-readable kind, e.g. "Exponential Linear Unit"."""
        return self.__dict__.get("_type") or type(self).__name__

    @type.setter
    def type(self, value: str) -> None:
        self.__dict__["_type"] = str(value)

    @property
    def label(self) -> str:
        """How messages name the layer: ``'elu_1' (ELU)``, or the class name
        alone for an unnamed layer. Every error about a layer uses it."""
        return f"'{self.name}' ({type(self).__name__})" if self.name else type(self).__name__

    def __setattr__(self, key: str, value: Any) -> None:
        if isinstance(value, Learnable):
            self._declare_learnable(key, value)
        elif isinstance(value, torch.nn.Parameter) and key not in self._parameters:
            # a PyTorch user's `self.w = nn.Parameter(t)`: a learnable like
            # Learnable(t), the same Parameter object (never silently untrained)
            self._declare_learnable(key, Learnable(value, learnable=value.requires_grad),
                                    parameter=value)
        elif isinstance(value, State):
            if key in self._parameters:
                raise LayerError(f"layer {self.label}: "
                                 f"'{key}' is a Learnable and cannot become State")
            self.register_buffer(key, as_tensor(value.value, f"State '{key}'"))
        elif key == "name":
            if value is None:
                value = ""
            if not isinstance(value, str) or (value and not _NAME_RE.match(value)):
                raise LayerError(f"layer name: expected letters, digits, '_', '-' or '.', "
                                 f"starting with a letter, got {value!r}")
            object.__setattr__(self, key, value)
        elif key in self._parameters and isinstance(value, torch.Tensor) \
                and not isinstance(value, torch.nn.Parameter):
            # `self.alpha = tensor` on an existing learnable keeps it learnable
            # (and is not redrawn: see Learnable's draw)
            self._draws.pop(key, None)
            with torch.no_grad():
                param = self._parameters[key]
                if param.shape != value.shape:
                    self._parameters[key] = torch.nn.Parameter(
                        value.detach().to(param.dtype), requires_grad=param.requires_grad)
                else:
                    param.copy_(value)
        else:
            super().__setattr__(key, value)

    def _declare_learnable(self, key: str, spec: Learnable,
                           parameter: torch.nn.Parameter | None = None) -> None:
        if spec.draw is not None and not callable(spec.draw):
            raise LayerError(f"layer {self.label}, Learnable '{key}': draw must be a "
                             f"function returning the initial value, got {spec.draw!r:.60}")
        if spec.value is None and spec.draw is None and parameter is None:
            raise LayerError(f"layer {self.label}, Learnable '{key}': give a value or draw")
        raw = spec.draw() if spec.value is None and parameter is None else spec.value
        value = parameter if parameter is not None else \
            as_tensor(raw, f"layer {self.label}, Learnable '{key}'")
        self._draws.pop(key, None)
        for factor in ("learn_rate_factor", "l2_factor"):
            f = getattr(spec, factor)
            if not isinstance(f, (int, float)) or f < 0 or not np.isfinite(f):
                raise LayerError(f"Learnable '{key}': {factor} must be a finite number >= 0, "
                                 f"got {f!r}")
        if key in self._buffers:
            del self._buffers[key]
        self.register_parameter(key, parameter if parameter is not None else
                                torch.nn.Parameter(value, requires_grad=bool(spec.learnable)))
        self._factors[key] = _Factors(float(spec.learn_rate_factor), float(spec.l2_factor))
        if spec.draw is not None:
            # the value drawn now: a value changed since, even in place
            # (``with torch.no_grad(): layer.alpha.copy_(...)``; deepcopy
            # resets version counters), is not redrawn
            self._draws[key] = (spec.draw, self._parameters[key].detach().clone())
        if key not in self._learnable_order:
            self._learnable_order.append(key)

    # ------------------------------------------------------------------
    # learnables
    # ------------------------------------------------------------------
    @property
    def learnable_names(self) -> list[str]:
        """Names of the learnables, in declaration order (the order of
        ``backward``'s parameter derivatives): the declared ones
        (:class:`Learnable` or ``torch.nn.Parameter`` attributes), then the
        parameters of submodules assigned to the layer, by their dotted path
        (``"proj.weight"`` for ``self.proj = torch.nn.Linear(...)``)."""
        own = [k for k in self._learnable_order if k in self._parameters]
        if not self._modules:
            return own
        return own + list(self._submodule_parameters())

    def _submodule_parameters(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        plain_names = type(self)._submodule_learnable_name is Layer._submodule_learnable_name
        for mname, module in self._modules.items():
            if module is None:
                continue
            # a submodule without submodules of its own: its _parameters, in
            # the order named_parameters gives (several times faster, and
            # this runs for every training step of the layer)
            items = ((k, p) for k, p in module._parameters.items() if p is not None) \
                if not module._modules else _named_parameters(module)
            if plain_names:
                for pname, p in items:
                    out[f"{mname}.{pname}"] = p
            else:
                for pname, p in items:
                    out[self._submodule_learnable_name(mname, pname)] = p
        return out

    def _submodule_learnable_name(self, module_name: str, parameter_name: str) -> str:
        # ModuleLayer names its wrapped module's parameters without the prefix
        return f"{module_name}.{parameter_name}"

    @property
    def state_names(self) -> list[str]:
        """Names of the declared :class:`State` tensors, then the buffers of
        submodules (by dotted path, as learnables)."""
        own = list(self._buffers.keys())
        for mname, module in self._modules.items():
            if module is not None:
                own += [self._submodule_learnable_name(mname, b)
                        for b, _ in module.named_buffers()]
        return own

    def learnables(self) -> dict[str, torch.nn.Parameter]:
        """The learnables by name, in declaration order."""
        own = {k: self._parameters[k] for k in self._learnable_order if k in self._parameters}
        if self._modules:
            own.update(self._submodule_parameters())
        return own  # type: ignore[return-value]

    def _learnable_values(self) -> list[torch.nn.Parameter]:
        """``list(self.learnables().values())`` without building the names
        (the autograd bridge asks for them every training step)."""
        own = [self._parameters[k] for k in self._learnable_order if k in self._parameters]
        if not self._modules:
            return own
        if type(self)._submodule_learnable_name is not Layer._submodule_learnable_name:
            return list(self.learnables().values())   # a layer naming them its own way
        for module in self._modules.values():
            if module is None:
                continue
            if not module._modules:
                own += [p for p in module._parameters.values() if p is not None]
            else:
                own += _parameter_values(module)
        return own

    def has_learnable(self, name: str) -> bool:
        """Whether the layer has a learnable ``name`` yet. Layers that create
        a learnable in :meth:`initialize` (once the input size is known) ask
        this to see whether it was given or already created."""
        return name in self._parameters or (bool(self._modules) and name in self.learnables())

    def _learnable(self, name: str) -> torch.Tensor:
        if name in self._parameters and name in self._learnable_order:
            return self._parameters[name]  # type: ignore[return-value]
        found = self._submodule_parameters().get(name) if self._modules else None
        if found is None:
            raise LayerError(f"layer {self.label} has no learnable "
                             f"'{name}'; its learnables are {self.learnable_names}")
        return found

    def _check_learnable(self, name: str) -> None:
        self._learnable(name)

    def _factor(self, name: str) -> _Factors:
        self._check_learnable(name)
        return self._factors.get(name, _UNIT_FACTORS)

    def freeze(self, *names: str) -> "Layer":
        """Stop training the named learnables (all if none are named)."""
        for n in names or self.learnable_names:
            self._learnable(n).requires_grad_(False)
        return self

    def unfreeze(self, *names: str) -> "Layer":
        """Train the named learnables again (all if none are named)."""
        for n in names or self.learnable_names:
            self._learnable(n).requires_grad_(True)
        return self

    def is_learnable(self, name: str) -> bool:
        """Whether training currently updates the learnable ``name``."""
        return bool(self._learnable(name).requires_grad)

    def learn_rate_factor(self, name: str) -> float:
        """MATLAB's ``getLearnRateFactor``."""
        return self._factor(name).learn_rate_factor

    def l2_factor(self, name: str) -> float:
        """MATLAB's ``getL2Factor``."""
        return self._factor(name).l2_factor

    def set_learn_rate_factor(self, name: str, factor: float) -> "Layer":
        """MATLAB's ``setLearnRateFactor``; 0 keeps a parameter fixed."""
        self._check_learnable(name)
        if factor < 0:
            raise LayerError(f"set_learn_rate_factor('{name}'): expected >= 0, got {factor}")
        self._factors[name] = dataclasses.replace(self._factor(name), learn_rate_factor=float(factor))
        return self

    def set_l2_factor(self, name: str, factor: float) -> "Layer":
        """MATLAB's ``setL2Factor``."""
        self._check_learnable(name)
        if factor < 0:
            raise LayerError(f"set_l2_factor('{name}'): expected >= 0, got {factor}")
        self._factors[name] = dataclasses.replace(self._factor(name), l2_factor=float(factor))
        return self

    def needs_gradient(self, which: str | int) -> bool:
        """Inside ``backward``: whether a derivative is needed.

        ``which`` is a learnable's name, or the index of an input (0 for X).
        A frozen learnable, or the input of the network's first layer, needs
        none, so ``backward`` may skip computing it and return ``None``.
        Outside ``backward`` every derivative counts as needed.
        """
        needs = self._needs
        if needs is None:
            if isinstance(which, str):
                self._check_learnable(which)
            return True
        if isinstance(which, int):
            if not 0 <= which < self.num_inputs:
                raise LayerError(f"needs_gradient({which}): layer has {self.num_inputs} input(s)")
            return bool(needs[which])
        self._check_learnable(which)
        return bool(needs[self.num_inputs + self.learnable_names.index(which)])

    def needed_gradients(self) -> tuple[bool, ...] | None:
        """Inside ``backward``: every answer of :meth:`needs_gradient` at
        once, one per input then one per learnable (in ``learnable_names``
        order); ``None`` outside ``backward`` (every derivative needed).
        A layer that runs other layers' backwards (a fused chain) reads its
        own needs this way and hands each part its share with
        :meth:`backward_with_needs`."""
        needs = self._needs
        return None if needs is None else tuple(bool(n) for n in needs)

    def backward_with_needs(self, needs: Sequence[bool] | None, *args):
        """``self.backward(*args)`` with :meth:`needs_gradient` answering from
        ``needs`` (one bool per input then per learnable; ``None``: every
        derivative needed): how the autograd bridge calls a hand-written
        ``backward``, and how a fused layer calls its parts' (so a part
        skips, say, the derivative of the network's input)."""
        if needs is not None and len(needs) != self.num_inputs + len(self.learnable_names):
            raise LayerError(
                f"layer {self.label}: backward_with_needs expected "
                f"{self.num_inputs + len(self.learnable_names)} needs (inputs, then "
                f"learnables {self.learnable_names}), got {len(needs)}")
        return self._backward_with(None if needs is None else tuple(needs), args)

    def _backward_with(self, needs: tuple | None, args: tuple):
        """:meth:`backward_with_needs` for a caller whose ``needs`` are
        already the right length (the bridge's come from autograd)."""
        # object.__setattr__: nn.Module's costs ~7 us, and this runs every step
        object.__setattr__(self, "_needs", needs)
        try:
            return self.backward(*args)
        finally:
            object.__setattr__(self, "_needs", None)

    # ------------------------------------------------------------------
    # the user-facing computation
    # ------------------------------------------------------------------
    def predict(self, *X: torch.Tensor):
        raise NotImplementedError(f"layer {self.label} must define predict(self, X)")

    def training_forward(self, *X: torch.Tensor):
        """The training-time computation, ``(Z, memory)``: the ``forward``
        a layer class defines (see "forward and nn.Module" in the class
        docstring); by default predict's output and no memory."""
        return self.predict(*X), None

    def forward(self, *X: torch.Tensor):  # type: ignore[override]
        """``torch.nn.Module.forward``: the layer's output ``Z`` (a tuple for
        several outputs), from ``training_forward`` in training mode (through
        the hand-written ``backward`` when there is one) and ``predict`` in
        inference mode (``self.training``). ``layer(X)`` runs this through
        ``torch.nn.Module.__call__``, so hooks fire."""
        return run_layer(self, X, training=self.training)

    def initialize(self, input_sizes: Sequence[tuple[int, ...]]) -> None:
        """Create learnables that depend on the input size (optional)."""

    def pending_draws(self) -> dict[str, Any]:
        """The functions of the learnables declared with ``Learnable(draw=...)``
        that the network will draw again when it is built, by name."""
        return {key: draw for key, (draw, _) in self._draws.items()}

    def draw_initial_values(self) -> None:
        """Draw again the learnables declared with ``Learnable(draw=...)``
        that were not set since. A network calls it when it is built, before
        :meth:`initialize`; each value is drawn once."""
        draws, self._draws = self._draws, {}
        for key, (draw, drawn) in draws.items():
            param = self._parameters.get(key)
            if param is None or param.is_meta or drawn.is_meta:
                continue            # sizes only (loading builds on "meta"): nothing to draw
            if param.shape == drawn.shape and torch.equal(param.detach().cpu(), drawn.cpu()):
                value = as_tensor(draw(), f"layer {self.label}, Learnable '{key}'")
                with torch.no_grad():
                    param.copy_(value.to(param.device, param.dtype).reshape(param.shape))

    def fused_with(self, following: "Layer") -> "Layer | None":
        """Optional: a layer that computes ``following(self(X))`` in one step,
        or ``None`` (the default) when this layer does not fuse with
        ``following``.

        A network asks each layer about the layer after it when it is built
        and, where the answer is a layer, runs that in place of the pair
        whenever nothing needs the value between them: no hook on either
        layer, both in the same mode (training or inference), neither set to
        ``use_autograd``, and the caller not asking for every layer's output
        (:meth:`Network.layer_outputs`, the training monitor); set
        ``net.fuse_layers = False`` to run every layer on its own. The fused
        layer must compute with this layer's and ``following``'s own
        learnables and state (hold the two layers as submodules, as
        :class:`~layerlab.layers.fused.BatchNormELU` does), so that
        gradients, saving and the optimizer see only the original layers.
        Batch normalization fuses with a following ELU or ReLU this way; a
        fully connected layer with that pair, and such blocks with each
        other, into a :class:`~layerlab.layers.fused_chain.FusedChain` (one
        layer, one autograd node, for a run of layers with their own
        backwards: return ``FusedChain([self, following])`` to chain yours).
        """
        return None

    @property
    def has_backward(self) -> bool:
        """Whether the layer's own ``backward`` is used: by default, whether
        the class defines one. A layer may override this property to choose
        per instance (``BatchNormalization(backward="native")`` lets
        autograd differentiate PyTorch's fused op instead)."""
        return type(self).backward is not Layer.backward

    def backward(self, *args):
        raise NotImplementedError  # pragma: no cover - marker, see has_backward

    def __repr__(self) -> str:
        learn = ", ".join(f"{k}{tuple(p.shape)}{'' if p.requires_grad else ' frozen'}"
                          for k, p in self.learnables().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' + learn if learn else ''})"

    # Needed by persistence and summaries: the arguments the layer was
    # constructed with. Captured automatically in __init_subclass__.
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The seed's contract names the training computation `forward` and
        # has it return (Z, memory); nn.Module's `forward` (what __call__,
        # hooks, torch.compile and torch.func run) returns Z. The class's own
        # `forward` becomes its `training_forward`, and Layer.forward stays
        # the Module's forward.
        if "forward" in cls.__dict__:
            if "training_forward" in cls.__dict__:
                raise LayerError(f"layer class {cls.__name__} defines both forward and "
                                 f"training_forward: define one (forward is the "
                                 f"training computation returning (Z, memory))")
            cls.training_forward = cls.__dict__["forward"]
            del cls.forward
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_layerlab_wrapped", False):
            return
        import functools
        import inspect
        sig = inspect.signature(init)

        @functools.wraps(init)
        def wrapped(self, *args, **kw):
            # record the outermost constructor's arguments only
            if "_config" not in self.__dict__:
                try:
                    bound = sig.bind(self, *args, **kw)
                    bound.apply_defaults()
                    cfg = dict(bound.arguments)
                    cfg.pop("self", None)
                    self.__dict__["_config"] = cfg
                except TypeError:
                    pass  # the call itself will raise a clear TypeError
            init(self, *args, **kw)
        wrapped._layerlab_wrapped = True  # type: ignore[attr-defined]
        cls.__init__ = wrapped

    @property
    def config(self) -> dict[str, Any]:
        """The arguments this layer was constructed with (for saving)."""
        return dict(self.__dict__.get("_config", {}))


class InputLayer(Layer):
    """A network's entry point: checks the size of the data and normalizes
    it. ``input_size`` is one observation's size, e.g. ``(1, 28, 28)``.

    Input layers are the only layers that see the training data before
    training: the trainer calls :meth:`compute_normalization` with it.
    """

    input_size: tuple[int, ...] = ()

    def compute_normalization(self, X: torch.Tensor) -> None:
        """Compute normalization statistics from the training data."""

    @property
    def needs_normalization_data(self) -> bool:
        return False


class OutputLayer(Layer):
    """A network's loss layer (the last layer).

    Implements ``loss(Y, T)``: a scalar, the mean over the mini-batch, from
    the network's output ``Y`` and targets ``T`` (``net.loss(net(X), T)`` in a
    plain PyTorch loop); ``prepare_targets(Y, n)``:
    the user's targets (labels, values) as a tensor for ``n`` observations;
    and ``metric(Y, T)``: the figure the training table shows (``metric_name``
    names it; ``metric_is_percentage`` shows it as a percentage).
    """

    metric_name: str = "Accuracy"
    metric_is_percentage: bool = True

    def predict(self, X):
        return X

    def takes_logits_from(self, layer: Layer) -> bool:
        """Optional: whether training may skip ``layer`` (the one feeding
        this output layer) and compute the loss from its input with
        :meth:`loss_from_logits` instead, e.g. a softmax before a
        cross-entropy (exact, more accurate and faster). Default False."""
        return False

    def loss_from_logits(self, logits: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """Optional, with :meth:`takes_logits_from`: the loss from the input
        of the layer that feeds this one (the logits), equal to
        ``loss(that_layer(logits), T)``."""
        raise NotImplementedError(f"output layer {type(self).__name__} takes no logits")

    def loss(self, Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"output layer {type(self).__name__} must define loss(Y, T)")

    def prepare_targets(self, Y: Any, n: int) -> torch.Tensor:
        raise NotImplementedError(
            f"output layer {type(self).__name__} must define prepare_targets(Y, n)")

    def metric(self, Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"output layer {type(self).__name__} must define metric(Y, T)")
