"""Compiled CPU kernels behind layerlab's fused layers.

Eager PyTorch runs each op as its own pass over memory; a layer pair such as
batch normalization followed by an ELU takes a dozen passes over its
activation, where two suffice (bench/README.md). These kernels do that work
in C, one library per source beside this file (batch norm + ELU, the
convolution for few input channels, convolution + batch norm + ELU, the
fully connected layer with few outputs), built once per machine by
:mod:`layerlab.kernels.build` and called with ctypes.

Every function here has the same contract: it runs only on what
:func:`usable` accepts (CPU, float32, contiguous, ordinary tensors outside
autograd, ``torch.func`` and ``torch.compile``) and returns ``None`` when
the kernel is not built here; the caller then computes with PyTorch ops.
"""

from __future__ import annotations

import ctypes
import operator

import torch
from torch.autograd import profiler as _autograd_profiler

from . import build

__all__ = ["usable", "batchnorm_elu_forward", "batchnorm_elu_backward", "conv2d_forward",
           "conv2d_weight_grad", "conv_batchnorm_elu_forward", "conv_batchnorm_elu_backward",
           "dense_forward", "dense_input_grad", "dense_weight_grad",
           "DenseChainPlan", "dense_chain_forward", "dense_chain_backward", "status"]

_P, _I, _D, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
#: each library's functions: (argument types, result type)
_SIGNATURES = {
    "batchnorm_elu": {
        "batchnorm_elu_forward_train": ([_P, _P, _I, _I, _I, _P, _P, _P, _I, _D, _D, _P, _P, _P,
                                         _P, _INT], None),
        "batchnorm_elu_forward_eval": ([_P, _P, _I, _I, _I, _P, _P, _P, _I, _D, _P, _P, _INT],
                                       None),
        "batchnorm_elu_backward": ([_P, _P, _P, _P, _I, _I, _I, _P, _P, _P, _I, _P, _P, _P, _P,
                                    _P, _INT], None),
    },
    "conv2d_few_channels": {
        "conv2d_forward": ([_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _INT], None),
        "conv2d_weight_grad": ([_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _INT], _INT),
    },
    "conv_batchnorm_elu": {
        "conv_batchnorm_elu_forward_train": ([_P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I,
                                              _P, _P, _P, _I, _D, _D, _P, _P, _P, _P, _INT],
                                             _INT),
        "conv_batchnorm_elu_backward": ([_P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _P,
                                         _P, _P, _I, _P, _P, _P, _P, _P, _INT], _INT),
    },
    "dense_batchnorm_elu_chain": {
        "chain_set_sgemm": ([_P], None),
        "chain_check_sgemm": ([], _INT),
        "chain_forward": ([_I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P,
                           _I, _P, _P, _INT], _INT),
        "chain_backward": ([_I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I, _P, _P,
                            _P, _P, _INT], _INT),
    },
    "dense_skinny": {
        "dense_forward": ([_P, _P, _P, _P, _I, _I, _I, _INT], None),
        "dense_input_grad": ([_P, _P, _P, _I, _I, _I, _INT], None),
        "dense_weight_grad": ([_P, _P, _P, _I, _I, _I, _INT], None),
    },
}
_libs: dict[str, "_Functions | None"] = {}


def _library(name: str = "batchnorm_elu") -> "_Functions | None":
    if name not in _libs:
        lib = build.load(name)
        funcs = _Functions(lib, name) if lib is not None else None
        if funcs is not None and name == "dense_batchnorm_elu_chain" and not _hand_sgemm(funcs):
            funcs = None
        _libs[name] = funcs
    return _libs[name]


#: why the chain kernel has no matrix product here, if it has none
_no_sgemm: list[str] = []


def _hand_sgemm(funcs: "_Functions") -> bool:
    """Give the chain kernel the single-precision matrix product of the BLAS
    that PyTorch uses (MKL's Fortran ``sgemm_``, exported by
    ``libtorch_cpu``) and check it on a small product; False (the chain's
    layers then compute with PyTorch ops) when this PyTorch build exports
    none or it fails the check."""
    import os
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    address = None
    for candidate in ("libtorch_cpu.so", "libtorch.so"):
        path = os.path.join(lib_dir, candidate)
        if not os.path.exists(path):
            continue
        try:
            address = ctypes.cast(ctypes.CDLL(path).sgemm_, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        if address:
            break
    if not address:
        _no_sgemm.append("this PyTorch build exports no sgemm_ (its BLAS) to call")
        return False
    funcs.chain_set_sgemm(address)
    failed = funcs.chain_check_sgemm()
    if failed:
        funcs.chain_set_sgemm(None)
        _no_sgemm.append(f"PyTorch's sgemm_ failed the kernel's check (code {failed})")
        return False
    return True


class _Functions:
    """A library's functions, typed, each named ``layerlab::<function>`` in
    torch.profiler's tables while a profiler runs (``bench/profile_step.py``)."""

    def __init__(self, lib: ctypes.CDLL, name: str):
        for fname, (argtypes, restype) in _SIGNATURES[name].items():
            fn = getattr(lib, fname)
            fn.argtypes, fn.restype = argtypes, restype
            setattr(self, fname, _profiled(f"layerlab::{fname}", fn))


def _profiled(label: str, fn):
    def call(*args):
        if _autograd_profiler._is_profiler_enabled:
            with torch.profiler.record_function(label):
                return fn(*args)
        return fn(*args)
    return call


def status() -> dict[str, str]:
    """Each compiled kernel library: in use here, or why not."""
    out = {name: build.status(name) for name in _SIGNATURES}
    if _no_sgemm:
        out["dense_batchnorm_elu_chain"] = "not used: " + _no_sgemm[-1]
    return out


def usable(*tensors: torch.Tensor, library: str = "batchnorm_elu") -> bool:
    """Whether the compiled kernels may compute on ``tensors``: ordinary
    contiguous float32 CPU tensors that autograd is not recording, outside
    ``torch.compile``, ``torch.func`` transforms and tracing (ONNX export),
    with ``library`` built."""
    lib = _libs.get(library, False)
    # a tracer (torch.jit.trace, the ONNX exporter) would record the C
    # call's result as a constant
    if lib is None or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        # the exact classes: a tensor subclass (FakeTensor, a functorch
        # wrapper, a user's) has no plain memory to hand to C
        if (type(t) is not torch.Tensor and type(t) is not _PARAMETER) \
                or t.dtype is not _FLOAT32 or not t.is_cpu or not t.is_contiguous() \
                or (grad and t.requires_grad) or _is_wrapped(t):
            return False
    return lib is not False or _library(library) is not None


_PARAMETER, _FLOAT32 = torch.nn.Parameter, torch.float32
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _ncs(X: torch.Tensor) -> tuple[int, int, int]:
    n, c = X.shape[0], X.shape[1]
    return n, c, (X.numel() // (n * c)) if n * c else 0


def batchnorm_elu_forward(X, gamma, beta, alpha, epsilon, momentum=None,
                          running_mean=None, running_var=None, batch_statistics=True):
    """``ELU(batch_norm(X))`` for ``X`` ``(N, C, *)``: with the batch's
    statistics (training; the running statistics are moved towards them with
    ``momentum`` when given) or with the running ones. ``alpha`` has 1 or C
    values (0: a ReLU). Returns ``(Z, mean, invstd)`` (``mean``, ``invstd``:
    ``(C,)``, the batch's; ``None`` at inference), or ``None`` when the
    kernel cannot run on these tensors."""
    lib = _library()
    if lib is None:
        return None
    n, c, s = _ncs(X)
    Z = torch.empty_like(X)
    threads = torch.get_num_threads()
    astride = 1 if alpha.numel() == c else 0
    if not batch_statistics:
        lib.batchnorm_elu_forward_eval(X.data_ptr(), Z.data_ptr(), n, c, s, gamma.data_ptr(),
                                       beta.data_ptr(), alpha.data_ptr(), astride, epsilon,
                                       running_mean.data_ptr(), running_var.data_ptr(), threads)
        return Z, None, None
    mean, invstd = torch.empty(c), torch.empty(c)
    update = momentum is not None and running_mean is not None
    lib.batchnorm_elu_forward_train(
        X.data_ptr(), Z.data_ptr(), n, c, s, gamma.data_ptr(), beta.data_ptr(),
        alpha.data_ptr(), astride, epsilon, momentum if update else 0.0, mean.data_ptr(),
        invstd.data_ptr(), running_mean.data_ptr() if update else None,
        running_var.data_ptr() if update else None, threads)
    return Z, mean, invstd


def batchnorm_elu_backward(X, dLdZ, gamma, beta, alpha, mean, invstd, need_x=True, Z=None):
    """The derivatives of :func:`batchnorm_elu_forward` (training) from its
    input, the output's derivative and the batch's ``mean`` and ``invstd``:
    ``(dL/dX or None, dL/dgamma, dL/dbeta, dL/dalpha)``, the last ``(C,)``
    (summed by the caller when one alpha is shared). ``dLdZ`` must be a
    contiguous float32 tensor too. With the forward's output ``Z`` (same
    layout), channels with alpha > 0 take the ELU's derivative from it
    instead of computing the exponential again."""
    lib = _library()
    if lib is None:
        return None
    n, c, s = _ncs(X)
    dX = torch.empty_like(X) if need_x else None
    dgamma, dbeta, dalpha = torch.empty(c), torch.empty(c), torch.empty(c)
    lib.batchnorm_elu_backward(
        X.data_ptr(), Z.data_ptr() if Z is not None else None, dLdZ.data_ptr(),
        dX.data_ptr() if dX is not None else None, n, c, s,
        gamma.data_ptr(), beta.data_ptr(), alpha.data_ptr(), 1 if alpha.numel() == c else 0,
        mean.data_ptr(), invstd.data_ptr(), dgamma.data_ptr(), dbeta.data_ptr(),
        dalpha.data_ptr(), torch.get_num_threads())
    return dX, dgamma, dbeta, dalpha


#: the largest filter width the weight gradient kernel takes
CONV_MAX_FILTER_WIDTH = 7


def _conv_dims(X, weights_shape) -> tuple[int, ...]:
    """``(n, c, h, w, f, kh, kw)`` of a stride-1 convolution of ``X``."""
    n, c, h, w = X.shape
    f, _, kh, kw = weights_shape
    return n, c, h, w, f, kh, kw


def conv2d_forward(X, weights, bias):
    """``conv2d(X, weights, bias)`` at stride 1 without padding (pad X
    first), ``X`` ``(N, C, H, W)``: ``(N, F, H - KH + 1, W - KW + 1)``, or
    ``None`` when the kernel is not built."""
    lib = _library("conv2d_few_channels")
    if lib is None:
        return None
    n, c, h, w, f, kh, kw = _conv_dims(X, weights.shape)
    Z = X.new_empty((n, f, h - kh + 1, w - kw + 1))
    lib.conv2d_forward(X.data_ptr(), weights.data_ptr(),
                       bias.data_ptr() if bias is not None else None, Z.data_ptr(),
                       n, c, h, w, f, kh, kw, torch.get_num_threads())
    return Z


def conv2d_weight_grad(X, dLdZ, weights_shape):
    """The derivatives of :func:`conv2d_forward` with respect to the weights
    and the bias, ``(dL/dW, dL/db)``, or ``None`` when the kernel is not
    built (or could not allocate its sums). Filters up to
    :data:`CONV_MAX_FILTER_WIDTH` wide."""
    lib = _library("conv2d_few_channels")
    if lib is None:
        return None
    n, c, h, w, f, kh, kw = _conv_dims(X, weights_shape)
    dW, db = X.new_empty(weights_shape), X.new_empty(f)
    failed = lib.conv2d_weight_grad(X.data_ptr(), dLdZ.data_ptr(), dW.data_ptr(), db.data_ptr(),
                                    n, c, h, w, f, kh, kw, torch.get_num_threads())
    return None if failed else (dW, db)


#: the most outputs the fully connected kernels take
DENSE_MAX_OUTPUTS = 16


def dense_forward(X, W, b):
    """``X W^T + b`` for ``X`` ``(N, D)``, ``W`` ``(K, D)``, ``K <=``
    :data:`DENSE_MAX_OUTPUTS`; ``None`` when the kernel is not built."""
    lib = _library("dense_skinny")
    if lib is None:
        return None
    (n, d), k = X.shape, W.shape[0]
    Z = X.new_empty((n, k))
    lib.dense_forward(X.data_ptr(), W.data_ptr(), b.data_ptr() if b is not None else None,
                      Z.data_ptr(), n, d, k, torch.get_num_threads())
    return Z


def dense_input_grad(G, W):
    """``G W`` (dL/dX of :func:`dense_forward`), ``G`` ``(N, K)``."""
    return _dense_product("dense_input_grad", G, W, (G.shape[0], W.shape[1]))


def dense_weight_grad(G, X):
    """``G^T X`` (dL/dW of :func:`dense_forward`)."""
    return _dense_product("dense_weight_grad", G, X, (G.shape[1], X.shape[1]))


def _dense_product(function: str, G, B, out_shape):
    """``function(G, B) -> out`` of ``dense_skinny.c``; ``B`` is the long
    operand ``(., D)``, ``G`` the ``(N, K)`` one."""
    lib = _library("dense_skinny")
    if lib is None:
        return None
    (n, k), d = G.shape, B.shape[1]
    out = B.new_empty(out_shape)
    getattr(lib, function)(G.data_ptr(), B.data_ptr(), out.data_ptr(), n, d, k,
                           torch.get_num_threads())
    return out


def conv_batchnorm_elu_forward(X, weights, bias, gamma, beta, alpha, epsilon, momentum,
                               running_mean, running_var):
    """Training forward of convolution (stride 1, ``X`` padded already),
    batch normalization and ELU as one: ``(Z, A, mean, invstd)`` with ``A``
    the convolution's output, or ``None`` when the kernel is not built."""
    lib = _library("conv_batchnorm_elu")
    if lib is None:
        return None
    n, c, h, w, f, kh, kw = _conv_dims(X, weights.shape)
    A = X.new_empty((n, f, h - kh + 1, w - kw + 1))
    Z = torch.empty_like(A)
    mean, invstd = X.new_empty(f), X.new_empty(f)
    failed = lib.conv_batchnorm_elu_forward_train(
        X.data_ptr(), weights.data_ptr(), bias.data_ptr() if bias is not None else None,
        A.data_ptr(), Z.data_ptr(), n, c, h, w, f, kh, kw, gamma.data_ptr(), beta.data_ptr(),
        alpha.data_ptr(), 1 if alpha.numel() == f else 0, epsilon, momentum, mean.data_ptr(),
        invstd.data_ptr(), running_mean.data_ptr(), running_var.data_ptr(),
        torch.get_num_threads())
    return None if failed else (Z, A, mean, invstd)


def conv_batchnorm_elu_backward(X, A, Z, dLdZ, weights_shape, gamma, beta, alpha, mean, invstd):
    """The learnables' derivatives of :func:`conv_batchnorm_elu_forward`:
    ``(dL/dW, dL/db, dL/dgamma, dL/dbeta, dL/dalpha)`` (the last per
    channel), or ``None``. ``Z`` may be ``None``."""
    lib = _library("conv_batchnorm_elu")
    if lib is None:
        return None
    n, c, h, w, f, kh, kw = _conv_dims(X, weights_shape)
    dW, db = X.new_empty(weights_shape), X.new_empty(f)
    dgamma, dbeta, dalpha = X.new_empty(f), X.new_empty(f), X.new_empty(f)
    failed = lib.conv_batchnorm_elu_backward(
        X.data_ptr(), A.data_ptr(), Z.data_ptr() if Z is not None else None, dLdZ.data_ptr(),
        dW.data_ptr(), db.data_ptr(), n, c, h, w, f, kh, kw, gamma.data_ptr(), beta.data_ptr(),
        alpha.data_ptr(), 1 if alpha.numel() == f else 0, mean.data_ptr(), invstd.data_ptr(),
        dgamma.data_ptr(), dbeta.data_ptr(), dalpha.data_ptr(), torch.get_num_threads())
    return None if failed else (dW, db, dgamma, dbeta, dalpha)


def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class DenseChainPlan:
    """What the chain kernel's calls take about the blocks, built once for a
    chain's tensors and reused while they stay the same (the layer keeps it:
    :meth:`matches`): sizes, alpha strides, the epsilons and momenta, arrays
    of the blocks' tensors' addresses, and where each derivative goes in the
    one buffer that backward fills.

    ``blocks``: per block ``(W, b, gamma, beta, alpha, epsilon, momentum,
    running_mean, running_var)``, every tensor a contiguous float32 CPU
    tensor (see :func:`usable`), ``W`` ``(K, D)`` with ``D`` the previous
    block's ``K``, the others ``(K,)`` (alpha ``(K,)`` or ``(1,)``).
    ``head``: ``None`` or a last fully connected layer's ``(W, b)``, ``W``
    ``(H, K)``. ``alpha_wanted``: per block, whether its alpha's derivative
    is wanted (a learnable of the block's ELU; default: every block's).

    Backward's derivatives, in this order (the chain's learnables' order):
    per block ``dW, db, dbeta, dgamma`` and, where wanted, ``dalpha``, then
    the head's ``dW, db``.
    """

    def __init__(self, blocks, head=None, alpha_wanted=None):
        cols = list(zip(*blocks))
        self.tensors = [t for blk in blocks for t in (blk[0], blk[1], blk[2], blk[3], blk[4],
                                                      blk[7], blk[8])] + list(head or ())
        self.addresses = [t.data_ptr() for t in self.tensors]
        self.epsilons, self.momenta = list(cols[5]), list(cols[6])
        self.dims = [blocks[0][0].shape[1]] + [W.shape[0] for W in cols[0]]
        n = len(blocks)
        self.ks = self.dims[1:]
        self.dims_c = (ctypes.c_int64 * len(self.dims))(*self.dims)
        shared_alpha = [a.numel() == 1 for a in cols[4]]
        self.strides_c = (ctypes.c_int64 * n)(*[0 if s else 1 for s in shared_alpha])
        self.eps_c = (ctypes.c_double * n)(*cols[5])
        self.momentum_c = (ctypes.c_double * n)(*cols[6])
        self.W, self.b, self.gamma, self.beta, self.alpha, self.mean, self.var = (
            _pointers(cols[k]) for k in (0, 1, 2, 3, 4, 7, 8))
        self.head = head
        self.outputs = head[0].shape[0] if head else self.ks[-1]
        # the derivatives' buffer: sizes and shapes in order, and the
        # kernel's offsets (per block dW, db, dgamma, dbeta, dalpha or -1;
        # the head's dW, db)
        wanted = [True] * n if alpha_wanted is None else list(alpha_wanted)
        self.grad_sizes, self.matrices, offsets = [], [], []
        at = 0

        def slot(size, shape=None):
            nonlocal at
            if shape is not None:
                self.matrices.append((len(self.grad_sizes), shape))
            self.grad_sizes.append(size)
            at += size
            return at - size

        for i, (d, k) in enumerate(zip(self.dims, self.ks)):
            dW, db, dbeta, dgamma = slot(k * d, (k, d)), slot(k), slot(k), slot(k)
            dalpha = slot(1 if shared_alpha[i] else k) if wanted[i] else -1
            offsets += [dW, db, dgamma, dbeta, dalpha]
        if head:
            offsets += [slot(head[0].numel(), tuple(head[0].shape)), slot(head[1].numel())]
        self.grad_total = at
        self.offsets_c = (ctypes.c_int64 * len(offsets))(*offsets)

    def __reduce__(self):
        # a plan holds addresses of the tensors it was made for: a copy of
        # its layer (deepcopy, pickle) starts without one and makes its own
        return (type(None), ())

    def scratch_floats(self, n: int) -> int:
        """The size of backward's scratch for ``n`` observations: dL/dZ of a
        block, every block's dalpha and every block's dA."""
        return (n + len(self.ks)) * max(self.ks) + n * sum(self.ks)

    def memory_floats(self, n: int) -> int:
        """The size of the step's memory for ``n`` observations: each
        block's A, Z (but the chain's output) and batch statistics."""
        own_last = n * self.ks[-1] if self.head else 0
        return sum(2 * n * k + 2 * k for k in self.ks) - n * self.ks[-1] + own_last

    def matches(self, tensors, epsilons, momenta) -> bool:
        """Whether the plan holds for these tensors and numbers: the same
        tensor objects, each still contiguous at the same address (a
        ``.data`` swapped in, a move or a change of type gives a new one),
        and the same epsilons and momenta."""
        # every step: one pass of C-level maps over the 70-odd tensors
        return (len(tensors) == len(self.tensors) and list(epsilons) == self.epsilons
                and list(momenta) == self.momenta
                and all(map(operator.is_, tensors, self.tensors))
                and list(map(torch.Tensor.data_ptr, tensors)) == self.addresses
                and all(map(torch.Tensor.is_contiguous, tensors)))


def dense_chain_forward(X, plan: DenseChainPlan):
    """Training forward of a chain of fully connected + batch norm + ELU
    blocks (and its head, if any: :class:`DenseChainPlan`), ``X``
    ``(N, D)``; the running statistics are updated in place. Returns ``(Z,
    ws)``, ``ws`` the step's memory for :func:`dense_chain_backward`, or
    ``None`` when the kernel is not available here."""
    lib = _library("dense_batchnorm_elu_chain")
    if lib is None:
        return None
    n, head = X.shape[0], plan.head
    ws = X.new_empty(plan.memory_floats(n))
    Z = X.new_empty((n, plan.outputs))
    failed = lib.chain_forward(
        len(plan.ks), n, plan.dims_c, X.data_ptr(), plan.W, plan.b, plan.gamma, plan.beta,
        plan.alpha, plan.strides_c, plan.eps_c, plan.momentum_c, plan.mean, plan.var,
        head[0].data_ptr() if head else None, head[1].data_ptr() if head else None,
        plan.outputs, ws.data_ptr(), Z.data_ptr(), torch.get_num_threads())
    return None if failed else (Z, ws)


def dense_chain_backward(X, ws, Z, dLdZ, plan: DenseChainPlan, need_x: bool):
    """The derivatives of :func:`dense_chain_forward` from its input, memory,
    output and ``dL/dZ``: ``(dL/dX or None, [the learnables' derivatives in
    the chain's order, see DenseChainPlan])`` (the blocks' biases' are
    zeros: batch normalization removes them), or ``None``."""
    lib = _library("dense_batchnorm_elu_chain")
    if lib is None:
        return None
    n, head = X.shape[0], plan.head
    grads = X.new_empty(plan.grad_total)
    scratch = X.new_empty(plan.scratch_floats(n))
    dX = X.new_empty(X.shape) if need_x else None
    failed = lib.chain_backward(
        len(plan.ks), n, plan.dims_c, X.data_ptr(), ws.data_ptr(), Z.data_ptr(),
        dLdZ.data_ptr(), plan.W, plan.gamma, plan.beta, plan.alpha, plan.strides_c,
        head[0].data_ptr() if head else None, plan.outputs,
        dX.data_ptr() if dX is not None else None, grads.data_ptr(), plan.offsets_c,
        scratch.data_ptr(), torch.get_num_threads())
    if failed:
        return None
    parts = list(grads.split_with_sizes(plan.grad_sizes))
    for i, shape in plan.matrices:
        parts[i] = parts[i].view(shape)
    return dX, parts
