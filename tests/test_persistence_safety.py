"""A saved network or checkpoint is untrusted input: the probe cases of issue 11.

Crafted files are made the way an attacker would: the JSON is edited and the
checksum recomputed (``reseal``), since a SHA-256 is no signature. Payloads
would create a marker file if anything the file names were called.
"""

import errno
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.persistence import network_file, registry


def _net():
    return ll.Network([ll.FeatureInput(4), ll.FullyConnected(3, weights_initializer=ll.Gaussian(0.1)),
                       ll.ELU(3), ll.FullyConnected(2), ll.Softmax(),
                       ll.Classification(classes=["cat", "dog"])])


def _saved(tmp_path, net=None):
    path = tmp_path / "net.safetensors"
    ll.save(net if net is not None else _net(), path)
    return path


def reseal(src, dst, edit):
    """Copy ``src`` to ``dst`` with ``edit(meta)`` applied and a valid checksum."""
    tensors, meta = network_file.read_file(src)
    meta = json.loads(json.dumps(meta))
    edit(meta)
    network_file.write_file(dst, tensors, meta)
    return dst


def _payload(marker):
    return {"__object__": "layerlab.persistence.network_file.os.system",
            "kwargs": {"command": f"touch {marker}"}}


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- loading never calls or imports what a file names -----------------------------------
def test_os_system_payload_in_an_argument_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"

    def edit(meta):
        meta["layers"][1]["config"]["weights_initializer"] = _payload(marker)

    bad = reseal(_saved(tmp_path), tmp_path / "bad.safetensors", edit)
    with pytest.raises(ll.PersistenceError, match="refusing to build .*os.system.*value types"):
        ll.load(bad)
    assert not marker.exists()


def test_value_tags_name_only_the_closed_list(tmp_path):
    def edit(meta):
        meta["layers"][1]["config"]["weights_initializer"] = {"__value__": "os.system",
                                                              "fields": {"command": "x"}}

    bad = reseal(_saved(tmp_path), tmp_path / "bad.safetensors", edit)
    with pytest.raises(ll.PersistenceError, match="refusing to build 'os.system'"):
        ll.load(bad)


def test_payload_in_the_classes_field_is_refused(tmp_path):
    marker = tmp_path / "PWNED"

    def edit(meta):
        meta["layers"][-1]["classes"] = [_payload(marker), "dog"]

    bad = reseal(_saved(tmp_path), tmp_path / "bad.safetensors", edit)
    with pytest.raises(ll.PersistenceError, match="class labels should be strings or numbers"):
        ll.load(bad)
    assert not marker.exists()


def test_a_class_path_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nimport layerlab\n"
        f"class X(layerlab.Layer):\n    def predict(self, X):\n        return X\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def edit(meta):
        meta["layers"][2]["class"] = "evil_module.X"

    bad = reseal(_saved(tmp_path), tmp_path / "bad.safetensors", edit)
    with pytest.raises(ll.PersistenceError,
                       match=r"'evil_module.X'.*import the module.*custom_layers=\[X\]"):
        ll.load(bad)
    assert not marker.exists() and "evil_module" not in sys.modules
    with pytest.raises(ll.PersistenceError, match="'os.system'"):
        ll.load(reseal(bad, tmp_path / "bad2.safetensors",
                       lambda m: m["layers"][2].update({"class": "os.system"})))


def test_resume_from_a_crafted_checkpoint_never_calls_the_payload(tmp_path):
    marker = tmp_path / "PWNED"
    X, Y = _data()
    ll.train_network(X, Y, _layers(), _options(max_epochs=1, checkpoint_path=str(tmp_path)))
    good = tmp_path / "checkpoint.safetensors"
    for edit in (lambda m: m["checkpoint"]["optimizer"]["param_groups"][0].update(
                     {"lr": _payload(marker)}),
                 lambda m: m["checkpoint"]["optimizer"]["plain"].update({"0.x": _payload(marker)}),
                 lambda m: m["checkpoint"]["early"].update({"best_loss": _payload(marker)})):
        bad = reseal(good, tmp_path / "bad.safetensors", edit)
        with pytest.raises(ll.PersistenceError, match="refusing to build"):
            ll.train_network(X, Y, _layers(), _options(), resume_from=bad)
    assert not marker.exists()


# -- integrity: the checksum covers everything; the version is checked ------------------
@pytest.mark.parametrize("what", ["labels", "architecture", "version"])
def test_editing_labels_architecture_or_version_is_detected(tmp_path, what):
    path = _saved(tmp_path)
    raw = path.read_bytes()
    old, new = {"labels": ('["cat", "dog"]', '["dog", "cat"]'),
                "architecture": ('"output_size": 2', '"output_size": 3'),
                "version": ('"version": 2', '"version": 1')}[what]
    # the metadata is a JSON string inside the safetensors header: quotes escaped
    old, new = (x.replace('"', '\\"').encode() for x in (old, new))
    assert raw.count(old) >= 1         # the labels are in the config and the entry
    path.write_bytes(raw.replace(old, new))
    with pytest.raises(ll.PersistenceError, match="corrupted or was edited"):
        ll.load(path)


def test_a_newer_format_version_names_both_versions(tmp_path):
    bad = reseal(_saved(tmp_path), tmp_path / "v99.safetensors", lambda m: m.update(version=99))
    with pytest.raises(ll.PersistenceError, match="format version 99 .* reads versions 1 to 2"):
        ll.load(bad)


def test_a_version_1_file_still_loads(tmp_path):
    # written as layerlab wrote files before: tensors-only checksum, Gaussian by path
    from safetensors.torch import save_file
    net = _net()
    meta = network_file.architecture(net)
    meta["version"] = 1
    meta["layers"][1]["config"]["weights_initializer"] = {
        "__object__": "layerlab.layers.initializers.Gaussian", "kwargs": {"std": 0.1, "mean": 0.0}}
    tensors = {"net." + k: v.clone().contiguous() for k, v in net.state_dict().items()}
    meta["sha256"] = network_file._digest(tensors, None)
    save_file(tensors, str(tmp_path / "v1.safetensors"), metadata={"layerlab": json.dumps(meta)})
    back = ll.load(tmp_path / "v1.safetensors")
    assert _same(back, net) and back.classes == ["cat", "dog"]
    assert back.layers[1].config["weights_initializer"].std == 0.1


# -- sizes before allocation --------------------------------------------------------------
def test_a_huge_declared_layer_fails_before_allocating(tmp_path):
    small = ll.Network([ll.FeatureInput(20), ll.FullyConnected(20), ll.Softmax(),
                        ll.Classification()])
    path = _saved(tmp_path, small)

    def edit(meta):    # FeatureInput(20000) -> FullyConnected(20000): 3.2 GB of weights
        meta["layers"][0]["config"]["input_size"] = 20000
        meta["layers"][1]["config"]["output_size"] = 20000

    bad = reseal(path, tmp_path / "huge.safetensors", edit)
    assert bad.stat().st_size < 4000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss        # KiB on Linux
    with pytest.raises(ll.PersistenceError, match=r"'layers.1.weights' has size \(20, 20\), "
                                                  r"the architecture implies \(20000, 20000\)"):
        ll.load(bad)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grew < 200 * 1024, f"loading grew the peak memory by {grew / 1024:.0f} MiB"


def test_a_huge_input_without_weights_fails_on_the_meta_device(tmp_path):
    # no stored tensor reflects an image size with normalization "none": the
    # size inference itself must not allocate (2 x 1 x 10^5 x 10^5 floats = 80 GB)
    net = ll.Network([ll.ImageInput((1, 4, 4), normalization="none"), ll.ReLU(),
                      ll.GlobalAveragePooling2d(), ll.FullyConnected(2), ll.Softmax(),
                      ll.Classification()])
    path = _saved(tmp_path, net)
    bad = reseal(path, tmp_path / "huge.safetensors", lambda m: m["layers"][0]["config"].update(
        input_size={"__tuple__": [1, 100000, 100000]}))
    back = ll.load(bad)     # a valid network: its tensors fit; nothing of 80 GB was made
    assert back.input_size == (1, 100000, 100000)


# -- round trips keep dtypes ----------------------------------------------------------------
def test_a_float64_network_comes_back_float64(tmp_path):
    net = _net().double()
    back = ll.load(_saved(tmp_path, net))
    assert back.dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in back.state_dict().values())
    X = np.random.default_rng(0).normal(size=(5, 4))
    np.testing.assert_array_equal(ll.predict(back, X), ll.predict(net, X))


def test_every_builtin_layer_builds_on_the_meta_device(tmp_path):
    # the size check before allocation relies on this for crafted files
    layers = [ll.ImageInput((1, 8, 8)), ll.Convolution2d(3, 4, padding="same"),
              ll.BatchNormalization(), ll.ELU(4), ll.PReLU(), ll.LeakyReLU(), ll.CReLU(),
              ll.Maxout(2), ll.Dropout(0.1), ll.SpatialDropout(0.1), ll.MaxPooling2d(2),
              ll.AveragePooling2d(1), ll.LayerNormalization(), ll.Tanh(), ll.Sigmoid(),
              ll.ReLU(), ll.ModuleLayer(torch.nn.Identity()), ll.GlobalAveragePooling2d(),
              ll.FullyConnectedMaxout(4, 2),
              ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    names = {type(l).__name__ for l in layers} | {"Addition", "Concatenation", "Regression",
                                                   "FeatureInput"}
    assert names >= {c.__name__ for c in registry._builtins()}
    net = ll.Network(layers)
    tensors, meta = network_file.read_file(_saved(tmp_path, net))
    with torch.device("meta"):
        built = network_file._build(meta, [registry.find_layer_class(e["class"])
                                           for e in meta["layers"]], "x")
    assert all(t.is_meta for t in built.state_dict().values())
    back = ll.load(tmp_path / "net.safetensors")
    assert _same(back, net)
    X = torch.randn(6, 1, 8, 8).numpy()
    np.testing.assert_array_equal(ll.predict(back, X), ll.predict(net, X))
    ll.train_network(X, np.array([0, 1] * 3), back, ll.training_options(    # trains on
        "adam", max_epochs=1, mini_batch_size=3, verbose=False, check_layers=False))


class NumpyScale(ll.Layer):
    """A user layer that reads a tensor's value in its constructor (fails on
    the meta device) and keeps a plain tensor outside its learnables."""

    def __init__(self, scale=2.0, name=None):
        super().__init__(name=name)
        self.s = ll.Learnable(torch.tensor([float(scale)]))
        self.factor = float(self.s.detach().numpy()[0])      # no value on meta
        self.offset = torch.full((1,), 0.5)                   # neither Learnable nor State

    def predict(self, X):
        return X * self.s * self.factor / self.factor + self.offset


class PlainTensor(ll.Layer):
    """Builds on meta, but keeps a plain tensor that loading does not replace."""

    def __init__(self, name=None):
        super().__init__(name=name)
        self.offset = torch.full((1,), 0.5)

    def predict(self, X):
        return X + self.offset


@pytest.mark.parametrize("user_layer", [NumpyScale, PlainTensor])
def test_user_layers_that_cannot_build_on_meta_are_built_for_real(tmp_path, user_layer):
    net = ll.Network([ll.FeatureInput(3), user_layer(name="ns"), ll.FullyConnected(2)])
    back = ll.load(_saved(tmp_path, net))
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(ll.predict(back, X), ll.predict(net, X))
    assert not back.layer("ns").offset.is_meta


# -- user layers: custom_layers, classes of the running program, __main__ ---------------
class Swish(ll.Layer):
    """``Z = X * sigmoid(beta * X)`` with a learnable ``beta``."""

    def __init__(self, beta=1.0, name=None):
        super().__init__(name=name)
        self.beta = ll.Learnable(torch.tensor([float(beta)]))

    def predict(self, X):
        return X * torch.sigmoid(self.beta * X)


MAIN_SCRIPT = textwrap.dedent("""
    import numpy as np, torch, layerlab as ll
    class Swish(ll.Layer):
        def __init__(self, beta=1.0, name=None):
            super().__init__(name=name)
            self.beta = ll.Learnable(torch.tensor([float(beta)]))
        def predict(self, X):
            return X * torch.sigmoid(self.beta * X)
    net = ll.Network([ll.FeatureInput(4), Swish(0.5), ll.FullyConnected(2), ll.Softmax(),
                      ll.Classification()])
    ll.save(net, {path!r})
    np.save({pred!r}, ll.predict(net, np.ones((3, 4), np.float32)))
""")


def test_a_main_class_warns_on_save_and_loads_with_custom_layers(tmp_path):
    path, pred = str(tmp_path / "swish.safetensors"), str(tmp_path / "pred.npy")
    proc = subprocess.run([sys.executable, "-c", MAIN_SCRIPT.format(path=path, pred=pred)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Swish are defined in the script being run (__main__)" in proc.stderr
    assert "custom_layers=[Swish]" in proc.stderr
    with pytest.raises(ll.PersistenceError, match=r"'__main__.Swish'.*custom_layers=\[Swish\]"):
        ll.load(path)
    back = ll.load(path, custom_layers=[Swish])       # matched by name: another module's Swish
    assert isinstance(back.layers[1], Swish) and back.layers[1].beta.item() == 0.5
    np.testing.assert_array_equal(ll.predict(back, np.ones((3, 4), np.float32)), np.load(pred))


def test_classes_defined_in_the_program_load_without_custom_layers(tmp_path):
    net = ll.Network([ll.FeatureInput(4), Swish(2.0, name="sw"), ll.FullyConnected(2)])
    back = ll.load(_saved(tmp_path, net))
    assert type(back.layer("sw")) is Swish and _same(back, net)


def test_a_missing_user_class_is_named_in_a_fresh_process(tmp_path, monkeypatch):
    (tmp_path / "my_gone_layers.py").write_text(textwrap.dedent("""
        import layerlab as ll
        class Twice(ll.Layer):
            def predict(self, X):
                return 2 * X
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_gone_layers", raising=False)
    Twice = importlib.import_module("my_gone_layers").Twice
    ll.save(ll.Network([ll.FeatureInput(2), Twice(), ll.FullyConnected(2)]),
            tmp_path / "n.safetensors")
    load = "import layerlab as ll\ntry:\n    ll.load('n.safetensors')\n" \
           "except ll.PersistenceError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120).stdout      # a process without the module
    assert "'my_gone_layers.Twice'" in out and "import the module that defines" in out


def test_custom_layers_must_be_layer_classes_and_unambiguous(tmp_path):
    net = ll.Network([ll.FeatureInput(4), Swish(name="sw"), ll.FullyConnected(2)])
    path = _saved(tmp_path, net)
    with pytest.raises(ll.PersistenceError, match="custom_layers: expected layerlab.Layer"):
        ll.load(path, custom_layers=[dict])
    with pytest.raises(ll.PersistenceError, match=r"expected a list .* custom_layers=\[MyELU\]"):
        ll.load(path, custom_layers=Swish)
    other = type("Swish", (Swish,), {"__module__": "elsewhere"})
    moved = reseal(path, tmp_path / "moved.safetensors",
                   lambda m: m["layers"][1].update({"class": "moved.Swish"}))
    with pytest.raises(ll.PersistenceError, match="2 classes named 'Swish'"):
        ll.load(moved, custom_layers=[Swish, other])
    assert type(ll.load(moved, custom_layers=[Swish]).layer("sw")) is Swish


def test_registered_wrapper_classes_are_found_by_name():
    class Wrapper(ll.Layer):
        def predict(self, X):
            return X

    registry.register_layer_class(Wrapper)
    try:
        assert registry.find_layer_class("layerlab.wrappers.Wrapper") is Wrapper
        assert registry.is_builtin(Wrapper)
    finally:
        registry._REGISTERED.remove(Wrapper)
    with pytest.raises(TypeError):
        registry.register_layer_class(dict)


# -- checkpoints: every field checked, what does not fit named ---------------------------
def _data(n=64):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    return X, (X.sum(1) > 0).long()


def _layers():
    return [ll.FeatureInput(4), ll.FullyConnected(3), ll.BatchNormalization(), ll.ReLU(),
            ll.FullyConnected(2), ll.Softmax(), ll.Classification()]


def _options(**kw):
    return ll.training_options("adam", **{**dict(max_epochs=2, mini_batch_size=16, seed=1,
                                                verbose=False, check_layers=False), **kw})


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    X, Y = _data()
    ll.train_network(X, Y, _layers(), _options(max_epochs=1, checkpoint_path=str(folder)))
    return folder / "checkpoint.safetensors"


def _retensor(src, dst, edit):
    tensors, meta = network_file.read_file(src)
    edit(tensors)
    network_file.write_file(dst, tensors, meta)
    return dst


BAD_CHECKPOINTS = {
    "no iteration": ("meta", lambda m: m["checkpoint"].pop("iteration"), "no 'iteration' field"),
    "iteration text": ("meta", lambda m: m["checkpoint"].update(iteration="4"),
                       "'iteration' should be int"),
    "negative epoch": ("meta", lambda m: m["checkpoint"].update(epoch=-1), "expected >= 0"),
    "no early": ("meta", lambda m: m["checkpoint"].pop("early"), "no 'early' field"),
    "order out of range": ("tensors", lambda t: t["data.order"].add_(1000),
                           "'data.order' is not an order"),
    "order missing": ("tensors", lambda t: t.pop("data.order"), "no 'data.order' tensor"),
    "short history": ("tensors", lambda t: t.update({"hist.loss": t["hist.loss"][:1]}),
                      "'hist.loss' has size"),
    "bad rng": ("tensors", lambda t: t.update({"rng.torch": t["rng.torch"][:10]}),
                "'rng.torch' is not a PyTorch generator state"),
    "unknown tensor": ("tensors", lambda t: t.update({"zzz": torch.zeros(1)}),
                       "unexpected tensor 'zzz'"),
    "optimizer state size": ("tensors", lambda t: t.update({"opt.0.exp_avg": torch.zeros(7)}),
                             "optimizer state 'exp_avg' of parameter 0 has size"),
    "optimizer group": ("meta", lambda m: m["checkpoint"]["optimizer"]["param_groups"].append(
                            m["checkpoint"]["optimizer"]["param_groups"][0]),
                        "another network or other learn-rate/L2 factors"),
    "optimizer option type": ("meta", lambda m: m["checkpoint"]["optimizer"]["param_groups"][0]
                              .update(lr="fast"), "option 'lr' is 'fast'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_a_crafted_checkpoint_names_the_field_that_does_not_fit(tmp_path, checkpoint_file, case):
    kind, edit, message = BAD_CHECKPOINTS[case]
    bad = tmp_path / "bad.safetensors"
    (reseal if kind == "meta" else _retensor)(checkpoint_file, bad, edit)
    X, Y = _data()
    with pytest.raises(ll.PersistenceError, match=message):
        ll.train_network(X, Y, _layers(), _options(), resume_from=bad)


def test_a_checkpoint_of_other_data_options_or_network_says_which(checkpoint_file):
    X, Y = _data()
    with pytest.raises(ll.PersistenceError, match="other data: 64 training observations "
                                                  "there, 48 here"):
        ll.train_network(X[:48], Y[:48], _layers(), _options(), resume_from=checkpoint_file)
    with pytest.raises(ll.PersistenceError, match="other options: solver 'adam' there, 'sgdm'"):
        sgdm = ll.training_options("sgdm", max_epochs=2, mini_batch_size=16, verbose=False,
                                   check_layers=False)
        ll.train_network(X, Y, _layers(), sgdm, resume_from=checkpoint_file)
    with pytest.raises(ll.PersistenceError, match="other options: it is at iteration 4"):
        ll.train_network(X, Y, _layers(), _options(mini_batch_size=64),
                         resume_from=checkpoint_file)
    other = [ll.FeatureInput(4), ll.FullyConnected(5), ll.ReLU(), ll.FullyConnected(2),
             ll.Softmax(), ll.Classification()]
    with pytest.raises(ll.PersistenceError, match="written for another network"):
        ll.train_network(X, Y, other, _options(), resume_from=checkpoint_file)


def test_a_checkpoint_that_fits_resumes(checkpoint_file):
    X, Y = _data()
    net, info = ll.train_network(X, Y, _layers(), _options(), resume_from=checkpoint_file)
    assert info.iterations == 8


def test_a_version_1_checkpoint_still_resumes(tmp_path, checkpoint_file):
    from safetensors.torch import save_file
    tensors, meta = network_file.read_file(checkpoint_file)
    meta["version"] = 1
    meta["sha256"] = network_file._digest(tensors, None)     # version 1: tensors only
    old = tmp_path / "v1.safetensors"
    save_file(tensors, str(old), metadata={"layerlab": json.dumps(meta)})
    X, Y = _data()
    _, a = ll.train_network(X, Y, _layers(), _options(), resume_from=old)
    _, b = ll.train_network(X, Y, _layers(), _options(), resume_from=checkpoint_file)
    np.testing.assert_array_equal(a.training_loss, b.training_loss)


# -- writes: full disk, unwritable place, leftovers of a killed save ---------------------
@pytest.mark.parametrize("how", ["oserror", "safetensors"])
def test_a_full_disk_is_a_persistence_error_and_the_old_file_stays(tmp_path, monkeypatch, how):
    path = _saved(tmp_path)
    before = path.read_bytes()

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        if how == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        from safetensors import SafetensorError
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                              "StorageFull, message: \"No space left on device\" })")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    with pytest.raises(ll.PersistenceError, match=r"cannot save to .*net.safetensors.*the "
                                                  r"disk is full; any earlier file"):
        ll.save(_net(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.safetensors"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_a_persistence_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ll.PersistenceError, match="cannot save to .*ro"):
            ll.save(_net(), folder / "net.safetensors")
    finally:
        folder.chmod(0o700)


KILLED_SAVE = textwrap.dedent("""
    import os, signal, safetensors.torch, layerlab as ll
    real = safetensors.torch.save_file
    def die_midway(tensors, filename, metadata=None):
        real(tensors, filename, metadata)          # the temporary file is written...
        os.kill(os.getpid(), signal.SIGKILL)       # ...and the process dies before the rename
    safetensors.torch.save_file = die_midway
    net = ll.Network([ll.FeatureInput(64), ll.FullyConnected(256), ll.FullyConnected(2)])
    ll.save(net, {path!r})
""")


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "net.safetensors"
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE.format(path=str(path))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = [n for n in os.listdir(tmp_path) if n != "net.safetensors"]
    assert len(left) == 1 and left[0].startswith(".layerlab-tmp-") and not path.exists()
    ll.save(_net(), path)
    assert os.listdir(tmp_path) == ["net.safetensors"]
    assert ll.load(path).classes == ["cat", "dog"]


def test_loading_a_folder_says_it_is_a_folder(tmp_path):
    _saved(tmp_path)
    with pytest.raises(ll.PersistenceError, match="it is a folder, give the file; it holds "
                                                  "net.safetensors"):
        ll.load(tmp_path)
