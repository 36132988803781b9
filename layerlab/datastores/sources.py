"""Data sources: where ``train_network``, ``predict``, ``classify``,
``activations`` and ``validation_data`` read their observations from.

Every kind of data becomes a :class:`DataSource` (:func:`as_data_source`):

=====================================  =========================================================
data                                    memory
=====================================  =========================================================
NumPy array, tensor (``X, Y``)          held whole, on the training device (as before)
``np.memmap`` / ``np.load(mmap_mode)``  read per mini-batch with ``os.pread`` (pages are never
                                        mapped: peak memory ~ mini-batch x read-ahead, not N)
other array-likes (``shape`` +          gathered per mini-batch with ``X[sorted indices]``
``__getitem__``, e.g. h5py, zarr)
torch ``Dataset`` of ``(x, y)``         ``dataset[i]`` per observation, read ahead in threads
torch ``DataLoader``                    its own batching, shuffling and workers
``ImageDatastore`` & co.                decoded per mini-batch, read ahead in threads
=====================================  =========================================================

The trainer owns the order of the observations (MATLAB's ``shuffle``
modes, drawn from one generator whatever the source) and asks an indexed
source for the observations of each mini-batch by index; so shuffling,
epochs, the discarded incomplete last mini-batch and exact resume are the
same for every source. A ``DataLoader`` is the exception: its own sampler
and ``batch_size`` are used (``shuffle`` and ``mini_batch_size`` are
ignored); an incomplete last batch is discarded as MATLAB does; resume is
exact when its shuffling draws from PyTorch's global generator (the
default, which checkpoints save).

Targets (labels or responses) are small: a source gives all of them once
(:meth:`DataSource.targets`), so classes are known before the first step.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..data import as_input_tensor
from ..errors import DataError
from .readahead import read_ahead

__all__ = ["DataSource", "InMemorySource", "ArrayLikeSource",
           "DatasetSource", "LoaderSource", "as_data_source", "is_data_source", "is_lazy_array",
           "batch_seed"]


def batch_seed(seed: int | None, epoch: int, batch: int) -> int | None:
    """The random seed of one mini-batch's augmentation, a function of the
    run's seed, the epoch and the mini-batch only (so a resumed run draws
    the same augmentations, whatever the threads' timing)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


class DataSource:
    """Observations and their targets, read by index.

    A source implements ``__len__`` (N), :meth:`targets` (all N targets) and
    :meth:`read` (the observations at some indices, as a tensor
    ``(b, *observation size)``); the rest has defaults built on them.
    ``prefetch`` mini-batches are read ahead in ``workers`` threads.
    """

    prefetch: int = 2
    workers: int = 1
    own_batching = False        # True: the source batches itself (a DataLoader)
    input_size: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    what = "data"

    def __len__(self) -> int:
        raise NotImplementedError

    def targets(self) -> Any:
        """The targets of every observation (class labels or responses)."""
        raise NotImplementedError

    def read(self, indices: np.ndarray, seed: int | None = None) -> torch.Tensor:
        """The observations at ``indices`` (in that order); ``seed`` draws
        random augmentation where the source has any (None: none)."""
        raise NotImplementedError

    # -- what the trainer and the inference functions use -----------------
    def bind(self, input_size: tuple[int, ...], dtype: torch.dtype, what: str) -> "DataSource":
        """Check observations against the network's input layer from now on."""
        self.input_size, self.dtype, self.what = tuple(input_size), dtype, what
        return self

    def checked(self, x: Any, where: str) -> torch.Tensor:
        if self.input_size is None:
            return torch.as_tensor(x)
        return as_input_tensor(x, self.input_size, f"{self.what} ({where})", dtype=self.dtype)

    def per_epoch(self, batch_size: int) -> int:
        return len(self) // batch_size

    def check_for_training(self, classification: bool) -> None:
        """Refuse data a network cannot be trained on (e.g. one class)."""

    def to(self, device: torch.device) -> "DataSource":
        return self

    def epoch_batches(self, order: torch.Tensor, batch_size: int, count: int, epoch: int,
                      targets: torch.Tensor, device: torch.device,
                      rows: Callable[[int], slice] | None = None, seed: int | None = None,
                      encode: Callable[[Any, int], torch.Tensor] | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` training mini-batches ``(X, T)`` on ``device``: batch
        ``b`` holds the observations ``order[rows(b)]`` (default
        ``b*B:(b+1)*B``), augmented with :func:`batch_seed` ``(seed, epoch, b)``."""
        rows = rows or (lambda b: slice(b * batch_size, (b + 1) * batch_size))
        order_np = order.numpy()

        def load(b: int):
            idx = order_np[rows(b)]
            x = self.checked(self.read(idx, batch_seed(seed, epoch, b)),
                             f"observations {_span(idx)}")
            return x, targets[torch.from_numpy(idx)]

        for x, t in read_ahead(load, range(count), self.prefetch, self.workers):
            yield x.to(device, non_blocking=True), t.to(device, non_blocking=True)

    def inference_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The observations in their order, ``batch_size`` at a time (the
        last batch may be smaller), without augmentation, on the CPU."""
        n = len(self)

        def load(start: int):
            idx = np.arange(start, min(start + batch_size, n))
            return self.checked(self.read(idx, None), f"observations {_span(idx)}")

        yield from read_ahead(load, range(0, n, batch_size), self.prefetch, self.workers)

    def labelled_batches(self, batch_size: int, targets: torch.Tensor,
                         encode: Callable[[Any, int], torch.Tensor]
                         ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`inference_batches` with their targets (for validation):
        slices of ``targets`` (all the targets, encoded) in order."""
        start = 0
        for x in self.inference_batches(batch_size):
            yield x, targets[start:start + x.shape[0]]
            start += x.shape[0]

    def normalization_data(self) -> torch.Tensor:
        """Data for the input layer's ``compute_normalization``: the whole
        data when in memory; else a two-row stand-in ``mean -/+ std`` with
        the per-element mean and (population) standard deviation of the
        whole data, computed in one streaming pass in float64, so that any
        normalization built on means and standard deviations gets the
        whole data's figures without holding it."""
        total = total_sq = None
        count = 0
        for x in self.inference_batches(256):
            x64 = x.to(torch.float64)
            s, sq = x64.sum(0), x64.square().sum(0)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += x.shape[0]
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
        return torch.stack([mean - std, mean + std]).to(self.dtype or torch.float32)


def _span(idx: np.ndarray) -> str:
    if len(idx) == 0:
        return "none"
    return f"{int(idx.min())}..{int(idx.max())}" if len(idx) > 1 else str(int(idx[0]))


class InMemorySource(DataSource):
    """``X, Y`` held whole (a NumPy array or tensor): checked once, moved to
    the training device, each epoch's order applied with one
    ``index_select`` there (the fastest path for data that fits)."""

    prefetch = 0

    def __init__(self, X: Any, Y: Any):
        self.X_raw, self.Y = X, Y
        self.X: torch.Tensor | None = None
        self._cache: tuple[Any, torch.Tensor, torch.Tensor] | None = None

    def __len__(self):
        return int(self.X.shape[0]) if self.X is not None else len(self.X_raw)

    def targets(self):
        return self.Y

    def bind(self, input_size, dtype, what):
        super().bind(input_size, dtype, what)
        self.X = as_input_tensor(self.X_raw, input_size, what, dtype=dtype)
        self.X_raw = None
        return self

    def to(self, device):
        self.X = self.X.to(device)
        return self

    def read(self, indices, seed=None):
        return self.X[torch.as_tensor(indices, device=self.X.device)]

    def checked(self, x, where):
        return x   # checked whole by bind

    def normalization_data(self):
        return self.X

    def epoch_batches(self, order, batch_size, count, epoch, targets, device, rows=None,
                      seed=None, encode=None):
        rows = rows or (lambda b: slice(b * batch_size, (b + 1) * batch_size))
        if self._cache is None or self._cache[0] is not order:
            o = order.to(device)
            self._cache = (order, self.X.index_select(0, o), targets.to(device).index_select(0, o))
        _, Xc, Tc = self._cache
        for b in range(count):
            yield Xc[rows(b)], Tc[rows(b)]

    def inference_batches(self, batch_size):
        for s in range(0, self.X.shape[0], batch_size):
            yield self.X[s:s + batch_size]


def _memmap_file(X: Any) -> tuple[str, int] | None:
    """``(file, data offset)`` of a whole, C-ordered ``np.memmap`` (as
    ``np.load(mmap_mode="r")`` gives), whose rows can be read with pread."""
    if not isinstance(X, np.memmap) or not X.flags.c_contiguous or not X.filename:
        return None
    import mmap
    if not isinstance(X.base, mmap.mmap):   # a slice or view of a memmap: use X[idx]
        return None
    return X.filename, int(X.offset)


class ArrayLikeSource(DataSource):
    """An array too large for memory (``np.memmap``, h5py, zarr...) with
    targets ``Y`` in memory: only the rows of the current mini-batches are
    read. A memmap's rows are read from its file with ``os.pread`` (no pages
    mapped into the process), others with ``X[sorted indices]``."""

    def __init__(self, X: Any, Y: Any):
        shape = tuple(int(s) for s in X.shape)
        if not shape:
            raise DataError("train_network X: expected an array of observations, got a scalar")
        self.X, self.Y, self.shape = X, Y, shape
        self.file = _memmap_file(X)
        self.np_dtype = np.dtype(getattr(X, "dtype", np.float32))
        if self.np_dtype.kind == "c":
            raise DataError(f"X: expected real numbers, got complex values ({self.np_dtype}); "
                            f"pass X.real or np.abs(X) explicitly")
        self.row_bytes = self.np_dtype.itemsize * math.prod(shape[1:])
        self._fd: int | None = None

    def __len__(self):
        return self.shape[0]

    def targets(self):
        return self.Y

    def read(self, indices, seed=None):
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        srt = idx[order]
        if self.file is not None:
            return torch.from_numpy(self._pread(srt, order))
        uniq, inverse = np.unique(srt, return_inverse=True)
        rows = np.asarray(self.X[uniq.tolist()])   # h5py-style: increasing indices
        out = np.empty_like(rows[inverse])
        out[order] = rows[inverse]
        return torch.from_numpy(out)

    def _pread(self, srt: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Rows ``srt`` (sorted) read from the file straight into their
        places ``order`` of the result: one read per run of rows that are
        consecutive both in the file and in the result."""
        if self._fd is None:
            self._fd = os.open(self.file[0], os.O_RDONLY)
        out = np.empty((len(srt),) + self.shape[1:], dtype=self.np_dtype)
        flat = out.reshape(len(srt), -1)
        k = 0
        while k < len(srt):
            stop = k + 1
            while (stop < len(srt) and srt[stop] == srt[stop - 1] + 1
                   and order[stop] == order[stop - 1] + 1):
                stop += 1
            first, count = int(order[k]), stop - k
            got = os.preadv(self._fd, [memoryview(flat[first:first + count]).cast("B")],
                            self.file[1] + int(srt[k]) * self.row_bytes)
            if got != count * self.row_bytes:
                raise DataError(f"X: the file {self.file[0]!r} is shorter than its header says "
                                f"(row {int(srt[k])})")
            k = stop
        return out

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def _pair(item: Any, index: int, what: str) -> tuple[Any, Any]:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise DataError(f"{what}: item {index} should be a pair (x, y), got "
                        f"{type(item).__name__}"
                        + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
    return item[0], item[1]


def _dataset_labels(ds: Any, what: str) -> Any:
    """All targets of a map-style Dataset: ``TensorDataset``'s second tensor,
    a ``targets`` or ``labels`` attribute of the right length, or else one
    pass reading ``dataset[i][1]`` (which reads the inputs too)."""
    tensors = getattr(ds, "tensors", None)
    if isinstance(tensors, tuple) and len(tensors) == 2:
        return tensors[1]
    n = len(ds)
    for name in ("targets", "labels"):
        v = getattr(ds, name, None)
        if v is not None and not callable(v):
            try:
                if len(v) == n:
                    return v
            except TypeError:
                pass
    return [_pair(ds[i], i, what)[1] for i in range(n)]


def _as_target(y: Any) -> Any:
    if isinstance(y, torch.Tensor):
        return y.item() if y.numel() == 1 else y.numpy()
    return y


class DatasetSource(DataSource):
    """A map-style torch ``Dataset`` of ``(x, y)`` pairs (``x`` a tensor or
    array of the input layer's size), read ``dataset[i]`` by ``dataset[i]``
    in background threads."""

    workers = 2

    def __init__(self, dataset: Any):
        try:
            len(dataset)
        except TypeError:
            raise DataError(f"train_network data: a {type(dataset).__name__} has no length "
                            f"(an IterableDataset?); wrap it in a DataLoader or give a "
                            f"map-style Dataset") from None
        self.dataset = dataset
        self._labels = None

    def __len__(self):
        return len(self.dataset)

    def targets(self):
        if self._labels is None:
            raw = _dataset_labels(self.dataset, self.what)
            if isinstance(raw, list):
                raw = [_as_target(y) for y in raw]
                if raw and isinstance(raw[0], np.ndarray):
                    raw = np.stack(raw)
            self._labels = raw
        return self._labels

    def read(self, indices, seed=None):
        xs = []
        for i in np.asarray(indices).tolist():
            try:
                item = self.dataset[i]
            except Exception as exc:  # noqa: BLE001 - user code: name the item
                raise DataError(f"{self.what}: reading item {i} of the "
                                f"{type(self.dataset).__name__} raised "
                                f"{type(exc).__name__}: {exc}") from exc
            x, _ = _pair(item, i, self.what)
            xs.append(self._one(x, i))
        return torch.stack(xs)

    def _one(self, x: Any, i: int) -> torch.Tensor:
        try:
            t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        except Exception:  # noqa: BLE001
            raise DataError(f"{self.what}: item {i}: x should be a tensor or an array of "
                            f"numbers, got {type(x).__name__}") from None
        if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32,
                                                     torch.int64, torch.bool)):
            raise DataError(f"{self.what}: item {i}: x should hold real numbers, "
                            f"got {t.dtype}")
        if self.input_size is not None and tuple(t.shape) != self.input_size:
            raise DataError(f"{self.what}: item {i}: x has size {tuple(t.shape)}, the "
                            f"network's input layer expects "
                            f"{self.input_size} (one observation, no batch dimension)")
        return t


class LoaderSource(DataSource):
    """A torch ``DataLoader`` of ``(x, y)`` mini-batches: its own batching,
    sampler and workers are used. ``per_epoch`` is its number of full
    batches (an incomplete last batch is discarded, as MATLAB does)."""

    own_batching = True
    prefetch = 0

    def __init__(self, loader: Any):
        self.loader = loader
        try:
            self.n = len(loader.dataset)
        except TypeError:
            raise DataError("train_network data: the DataLoader's dataset has no length "
                            "(an IterableDataset); give a map-style Dataset") from None
        self.batch_size = loader.batch_size
        self._labels = None

    def __len__(self):
        return self.n

    def targets(self):
        if self._labels is None:
            inner = DatasetSource(self.loader.dataset)
            inner.what = self.what
            self._labels = inner.targets()
        return self._labels

    def per_epoch(self, batch_size):
        if self.batch_size is None:   # a batch_sampler: every batch it gives
            return len(self.loader)
        return self.n // self.batch_size if not self.loader.drop_last else len(self.loader)

    def read(self, indices, seed=None):
        return DatasetSource(self.loader.dataset).bind(
            self.input_size, self.dtype, self.what).read(indices)

    def epoch_batches(self, order, batch_size, count, epoch, targets, device, rows=None,
                      seed=None, encode=None):
        for b, item in enumerate(self.loader):
            if b >= count:
                break
            x, y = _pair(item, b, f"{self.what} (DataLoader batch)")
            x = self.checked(x, f"DataLoader batch {b + 1}")
            if rows is not None:   # a distributed run: rows(size) is this process's share
                share = rows(x.shape[0])
                x, y = x[share], y[share]
            yield x.to(device, non_blocking=True), encode(y, x.shape[0]).to(device)

    def labelled_batches(self, batch_size, targets, encode):
        """The loader's own ``(x, y)`` batches, ``y`` encoded (in whatever
        order its sampler gives)."""
        for b, item in enumerate(self.loader):
            x, y = _pair(item, b, f"{self.what} (DataLoader batch)")
            x = self.checked(x, f"DataLoader batch {b + 1}")
            yield x, encode(y, x.shape[0])

    def inference_batches(self, batch_size):
        """The loader's batches (its order: make it with ``shuffle=False``),
        ``x`` of each ``(x, y)`` pair or the batch itself."""
        for b, item in enumerate(self.loader):
            x = item[0] if isinstance(item, (tuple, list)) else item
            yield self.checked(x, f"DataLoader batch {b + 1}")


def is_data_source(data: Any) -> bool:
    """Whether ``data`` is given alone (a Dataset, DataLoader or datastore),
    not as ``X, Y``."""
    if isinstance(data, DataSource):
        return True
    try:
        from torch.utils.data import DataLoader, Dataset
    except ImportError:  # pragma: no cover
        return False
    return isinstance(data, (Dataset, DataLoader))


def is_lazy_array(X: Any) -> bool:
    """Whether ``X`` is read per mini-batch rather than whole (a memmap, or
    an array-like that is neither a NumPy array, a tensor nor a list)."""
    if isinstance(X, np.memmap):
        return True
    if isinstance(X, (np.ndarray, torch.Tensor, list, tuple)):
        return False
    return hasattr(X, "shape") and hasattr(X, "__getitem__") and hasattr(X, "dtype")


def as_data_source(data: Any, Y: Any = None, *, need_targets: bool = True) -> DataSource:
    """The :class:`DataSource` for ``data`` (with targets ``Y`` for arrays;
    ``need_targets=False``: inputs only, for prediction).

    Examples:
        >>> src = as_data_source(np.zeros((4, 2)), [0, 1, 0, 1])
        >>> type(src).__name__, len(src)
        ('InMemorySource', 4)
    """
    if isinstance(data, DataSource):
        return data
    from torch.utils.data import DataLoader, Dataset
    if isinstance(data, DataLoader):
        return LoaderSource(data)
    if isinstance(data, Dataset):
        return DatasetSource(data)
    if Y is None and need_targets:
        raise DataError(f"train_network: got {type(data).__name__} without targets Y; give "
                        f"X, Y arrays, a torch Dataset or DataLoader of (x, y) pairs or a "
                        f"layerlab datastore")
    if is_lazy_array(data):
        return ArrayLikeSource(data, Y)
    return InMemorySource(data, Y)
