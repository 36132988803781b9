"""The checks of saving: a round trip through :func:`layerlab.save` and
:func:`layerlab.load` in this process (``save_load``) and into a new Python
process (``save_load_fresh_process``).

The fresh process starts when the check begins (:func:`start_fresh_process`)
and is collected when its test's turn comes, so that it runs while the other
tests do. It is a child of a spare interpreter that has imported PyTorch and
layerlab once (:mod:`~layerlab.checking.spare_process`), so only the first
check in a program pays those imports (2-4 s).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..layer import InputLayer
from ..persistence import load, save
from .checks_basic import NUM_OBSERVATIONS
from .checks_behaviour import _largest_difference
from .harness import Subject, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult
from .spare_process import start_job

__all__ = ["check_save_load", "check_save_load_fresh_process", "start_fresh_process",
           "FreshProcess", "FRESH_PROCESS_TIMEOUT"]

#: seconds the new process may take (it imports PyTorch: 2-3 s on two cores)
FRESH_PROCESS_TIMEOUT = 120.0
# float32 predictions of the same values in two processes: rounding only
_FLOAT32_RTOL = 1e-5


def _one_layer_network(s: Subject, layer):
    """The layer in the smallest network that can hold it (an input layer
    for its input size, then the layer), or a reason why there is none."""
    from ..layers.input import FeatureInput, ImageInput   # local: layers import checking-free
    if isinstance(layer, InputLayer):
        return [layer], None
    if s.num_inputs != 1:
        return None, f"a layer with {s.num_inputs} inputs needs a graph to be saved in"
    (size,) = s.sizes
    if len(size) == 3:
        return [ImageInput(size, normalization="none"), layer], None
    if len(size) == 1:
        return [FeatureInput(size[0]), layer], None
    return None, f"no input layer takes observations of size {size}"


def _same_layer(s: Subject, layer, learnables, states, frozen, kind: str, predictions,
                rtol: float = 0.0) -> list[str]:
    """What differs between the saved layer and the loaded one
    (``predictions()``: the loaded and the saved layer's, called once the
    rest agrees)."""
    problems = []
    if kind != f"{type(layer).__module__}.{type(layer).__qualname__}":
        problems.append(f"loaded a {kind}, expected {type(layer).__qualname__}")
        return problems
    for what, a, b in (("learnable", layer.learnables(), learnables),
                       ("State", s.snapshot(layer), states)):
        if list(a) != list(b):
            problems.append(f"{what}s {list(b)} after loading, expected {list(a)}")
            continue
        for n in a:
            if not torch.equal(a[n].detach(), b[n].detach()):
                problems.append(f"{what} '{n}' changed in the round trip")
    for n in layer.learnable_names:
        if n in frozen and layer.is_learnable(n) != (not frozen[n]):
            problems.append(f"learnable '{n}': frozen or not was not kept")
    if not problems:
        predicted, expected = predictions()
        for p, q in zip(expected, predicted):
            diff = _largest_difference(p.double(), q.double())
            if diff is not None and diff[0] > rtol * max(1.0, float(p.abs().max())):
                problems.append(f"the loaded layer predicts differently (by up to "
                                f"{diff[0]:.3g}): is every setting the layer needs one of "
                                f"its constructor's arguments?")
    return problems


def check_save_load(s: Subject) -> CheckResult:
    """Save the layer (in a network after an input layer) with
    :func:`layerlab.save` and load it back with :func:`layerlab.load`: the
    same class, learnables (values and frozen or not), state and
    predictions."""
    name = "save_load"
    layer = s.copy(torch.float32, unfreeze=False)
    layers, why = _one_layer_network(s, layer)
    if layers is None:
        return CheckResult(name, SKIPPED, f"not run: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.safetensors")
        try:
            save(layers, path)
            loaded = load(path).layers[-1]
        except Exception as exc:  # noqa: BLE001 - the reason is the finding
            return CheckResult(name, FAILED, f"the round trip failed: "
                                             f"{describe_exception(exc)}")
    X = s.inputs(NUM_OBSERVATIONS, torch.float32)
    kind = f"{type(loaded).__module__}.{type(loaded).__qualname__}"
    frozen = {n: not loaded.is_learnable(n) for n in loaded.learnable_names}
    problems = _same_layer(s, layer, loaded.learnables(), s.snapshot(loaded), frozen, kind,
                           lambda: (s.predict(loaded, X), s.predict(layer, X)))
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    return CheckResult(name, PASSED, "saved with layerlab.save and loaded back: same class, "
                                     "learnables, state and predictions")


# ---------------------------------------------------------------------------
# save_load_fresh_process
# ---------------------------------------------------------------------------
# The new process: import the modules that define the layer's classes, as a
# program that uses them does (the checker names them from the live classes,
# never from the file: loading imports nothing a file names), load the file,
# predict the saved inputs, write the loaded layer's class, learnables, state
# and predictions back.
_CHILD = r"""
import sys, json, importlib
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
import layerlab
net_path, data_path, out_path = sys.argv[1:4]
for module in sys.argv[4:]:
    importlib.import_module(module)
layer = layerlab.load(net_path).layers[-1].eval()
data = load_file(data_path)
X = [data[f"X{i}"] for i in range(len(data))]
out = {f"W:{n}": p.detach().clone().contiguous() for n, p in layer.learnables().items()}
out.update({f"S:{n}": b.detach().clone().contiguous() for n, b in layer.named_buffers()})
with torch.no_grad():
    Z = layer.predict(*X)
Zs = Z if isinstance(Z, (tuple, list)) else (Z,)
out.update({f"Z{i}": z.contiguous() for i, z in enumerate(Zs)})
save_file(out, out_path, metadata={"class": f"{type(layer).__module__}.{type(layer).__qualname__}",
          "frozen": json.dumps({n: not p.requires_grad for n, p in layer.learnables().items()}),
          "learnables": json.dumps(list(layer.learnables())),
          "states": json.dumps([n for n, _ in layer.named_buffers()])})
"""


def _not_importable(layer) -> str | None:
    """Why a new process cannot import the layer's module, if it cannot."""
    module = type(layer).__module__
    if module == "__main__":
        return (f"its class is defined in the running script (__main__), which another "
                f"program cannot import: move {type(layer).__qualname__} into a module "
                f"(e.g. my_layers.py) and import it, to save it for other programs")
    mod = sys.modules.get(module)
    if mod is not None and getattr(mod, "__spec__", None) is None:
        return (f"its module {module!r} was created at run time (no import spec), so "
                f"another program cannot import it: define the class in a module file")
    return None


class FreshProcess:
    """A new Python process loading the saved layer (see the module doc)."""

    def __init__(self, s: Subject):
        self.skip, self.error, self.job, self.tmp = None, None, None, None
        self.layer = s.copy(torch.float32, unfreeze=False)
        layers, why = _one_layer_network(s, self.layer)
        if layers is None:
            self.skip = f"not run: {why}"
            return
        why = _not_importable(self.layer)
        if why:
            self.skip = why
            return
        self.tmp = tempfile.mkdtemp(prefix="layerlab-check-")
        net, data, self.out = (os.path.join(self.tmp, f) for f in
                               ("layer.safetensors", "inputs.safetensors", "out.safetensors"))
        try:
            save(layers, net)
        except Exception as exc:  # noqa: BLE001 - save_load reports it in detail
            self.error = f"saving failed: {describe_exception(exc)}"
            return
        self.X = s.inputs(NUM_OBSERVATIONS, torch.float32)
        save_file({f"X{i}": x.contiguous() for i, x in enumerate(self.X)}, data)
        modules = [type(self.layer).__module__]
        inner = getattr(self.layer, "module", None)      # a wrapped torch.nn module
        if isinstance(inner, torch.nn.Module):
            modules.append(type(inner).__module__)
        modules = list(dict.fromkeys(modules))
        # a child of the spare process where possible (see spare_process):
        # it finds modules as this program does (its sys.path), so what
        # fails there is what only this program's run time created
        self.job = start_job(_CHILD, [net, data, self.out, *modules])

    def finish(self, s: Subject) -> CheckResult:
        name = "save_load_fresh_process"
        if self.skip:
            return CheckResult(name, SKIPPED, self.skip)
        if self.error:
            return CheckResult(name, FAILED, self.error)
        done = self.job.wait(FRESH_PROCESS_TIMEOUT)
        if done is None:
            self.close()
            return CheckResult(name, FAILED, f"the new process did not finish within "
                                             f"{FRESH_PROCESS_TIMEOUT:g} s")
        returncode, err = done
        try:
            if returncode != 0:
                lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
                last = lines[-1] if lines else f"exit status {returncode}"
                return CheckResult(name, FAILED, f"loading in a new Python process failed: "
                                                 f"{last}")
            with safe_open(self.out, "pt") as f:
                meta = f.metadata()
            out = load_file(self.out)
            learnables = {n: out[f"W:{n}"] for n in json.loads(meta["learnables"])}
            states = {n: out[f"S:{n}"] for n in json.loads(meta["states"])}
            predicted = [out[f"Z{i}"] for i in range(s.num_outputs)]
            problems = _same_layer(s, self.layer, learnables, states,
                                   json.loads(meta["frozen"]), meta["class"],
                                   lambda: (predicted, s.predict(self.layer, self.X)),
                                   # another process may sum in another order (threads)
                                   rtol=_FLOAT32_RTOL)
        finally:
            self.close()
        if problems:
            return CheckResult(name, FAILED, "in a new Python process: " + "\n".join(problems))
        return CheckResult(name, PASSED, "loaded back in a new Python process (same sys.path): "
                                         "same class, learnables, state and predictions")

    def close(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def start_fresh_process(s: Subject) -> FreshProcess:
    """Save the layer and start the new process that loads it."""
    return FreshProcess(s)


def check_save_load_fresh_process(s: Subject) -> CheckResult:
    """Saved with :func:`layerlab.save` and loaded back with
    :func:`layerlab.load` in a new Python process with the same module
    search path: catches classes that resolve only in the current program
    (defined in the running script, in a module created at run time or
    loaded from a file under another name, or whose constructor reads
    settings the program changed at run time). A class defined in the
    running script (``__main__``) is skipped with that reason."""
    handle = s.background.pop("fresh_process", None)
    if handle is None:
        handle = start_fresh_process(s)
    return handle.finish(s)
