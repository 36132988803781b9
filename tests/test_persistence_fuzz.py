"""Fuzzing saved networks and checkpoints (hypothesis).

* Mutated bytes (flips, truncation): ``load`` gives the identical network or
  a :class:`PersistenceError`, never another exception.
* Mutated JSON fields, with the checksum recomputed as an attacker would
  (values, deleted keys, tags, payloads that would create a marker file):
  a :class:`PersistenceError` or a network that the file validly describes;
  never another exception, never the payload's side effect, and the
  process's peak memory stays bounded.

The example counts are small so that CI stays fast and deterministic
(``derandomize``); set ``LAYERLAB_FUZZ_EXAMPLES`` for a longer run.
"""

import os
import resource

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layerlab as ll
from layerlab.persistence import network_file

EXAMPLES = int(os.environ.get("LAYERLAB_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
MEMORY_BOUND_KIB = 300 * 1024


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    net = ll.Network([ll.ImageInput((1, 4, 4)), ll.Convolution2d(3, 2, padding="same",
                                                               weights_initializer=ll.Gaussian(0.1)),
                      ll.BatchNormalization(), ll.ELU(2), ll.FullyConnected(2), ll.Softmax(),
                      ll.Classification(classes=["cat", "dog"])])
    ll.save(net, folder / "net.safetensors")
    X = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    Y = (X.sum(1) > 0).long()
    ll.train_network(X, Y, _ckpt_layers(), _ckpt_options(max_epochs=1,
                                                         checkpoint_path=str(folder)))
    return {"folder": folder, "net": net, "X": X, "Y": Y,
            "marker": folder / "PWNED", "peak": _peak()}


def _ckpt_layers():
    return [ll.FeatureInput(4), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]


def _ckpt_options(**kw):
    return ll.training_options("adam", **{**dict(max_epochs=2, mini_batch_size=16, seed=0,
                                                verbose=False, check_layers=False), **kw})


def _peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _payloads(marker):
    cmd = {"command": f"touch {marker}"}
    return [{"__object__": "layerlab.persistence.network_file.os.system", "kwargs": cmd},
            {"__object__": "os.system", "kwargs": cmd},
            {"__value__": "os.system", "fields": cmd},
            {"__value__": "Gaussian", "fields": {"std": -1, "mean": 0}},
            "layerlab.persistence.network_file.os.system", "os.system",
            {"__tuple__": [10 ** 12, 10 ** 12]}, 10 ** 30, -1, 20000]


KEYS = ["__tuple__", "__dict__", "__float__", "__value__", "fields", "__object__", "kwargs",
        "__unsaved__", "class", "name", "config", "std", "mean", "command"]


def _values(marker):
    scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=8)
               | st.floats(allow_nan=False, allow_infinity=False)
               | st.sampled_from(_payloads(marker)))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner,
                                          max_size=3), max_leaves=6)


def _paths(tree, prefix=()):
    """Every place in a JSON tree, as a key path."""
    out = [prefix]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) \
        if isinstance(tree, list) else ()
    for k, v in items:
        out += _paths(v, prefix + (k,))
    return out


def _mutate(meta, path, value, delete):
    if not path:
        return value if not delete else {}
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return meta


def _mutations(meta, marker):
    places = [p for p in _paths(meta) if p[:1] != ("sha256",)]
    # half the edits go where values are decoded (layer arguments, labels,
    # optimizer options), half of the values are payloads
    decoded = [p for p in places if len(p) > 2 and p[-2] in ("config", "classes", "early",
                                                                  "plain") or
               len(p) > 3 and p[-3] == "param_groups"]
    value = st.sampled_from(_payloads(marker)) | _values(marker)
    return st.lists(st.tuples(st.sampled_from(decoded) | st.sampled_from(places), value,
                              st.booleans()), min_size=1, max_size=3)


def _resealed(src, dst, edits):
    tensors, meta = network_file.read_file(src)
    for path, value, delete in edits:
        try:
            meta = _mutate(meta, path, value, delete)
        except (KeyError, IndexError, TypeError):
            pass            # an earlier edit removed or replaced the place
    if not isinstance(meta, dict):
        meta = {"format": meta}
    network_file.write_file(dst, tensors, meta)
    return dst


def _described(net):
    # a loaded layer was constructed with its name, a new one with name=None
    arch = network_file.architecture(net)
    for entry in arch["layers"]:
        entry["config"].pop("name", None)
    return arch


def _same_network(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return (_described(a) == _described(b) and list(sa) == list(sb)
            and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa))


def _after(files):
    assert not files["marker"].exists(), "a payload from the file ran"
    grew = _peak() - files["peak"]
    assert grew < MEMORY_BOUND_KIB, f"peak memory grew by {grew / 1024:.0f} MiB"


def _byte_edits():
    return st.tuples(st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                        st.integers(0, 255)), min_size=0, max_size=6),
                     st.none() | st.floats(0, 1))


def _apply_bytes(raw, edits):
    flips, cut = edits
    raw = bytearray(raw)
    for where, byte in flips:
        raw[int(where * len(raw))] = byte
    return bytes(raw[: int(cut * len(raw))] if cut is not None else raw)


@FUZZ
@given(data=st.data())
def test_mutated_bytes_give_the_same_network_or_a_persistence_error(files, data):
    src = files["folder"] / "net.safetensors"
    raw = src.read_bytes()
    bad = files["folder"] / "bytes.safetensors"
    bad.write_bytes(_apply_bytes(raw, data.draw(_byte_edits())))
    try:
        back = ll.load(bad)
    except ll.PersistenceError:
        pass
    else:
        assert _same_network(back, files["net"])
    _after(files)


@FUZZ
@given(data=st.data())
def test_mutated_json_fields_give_a_network_or_a_persistence_error(files, data):
    src = files["folder"] / "net.safetensors"
    _, meta = network_file.read_file(src)
    edits = data.draw(_mutations(meta, files["marker"]))
    bad = _resealed(src, files["folder"] / "json.safetensors", edits)
    try:
        back = ll.load(bad)
    except ll.PersistenceError:
        pass
    else:
        assert isinstance(back, ll.Network)
    _after(files)


def _resume(files, path):
    X, Y = files["X"], files["Y"]
    try:
        ll.train_network(X, Y, _ckpt_layers(), _ckpt_options(), resume_from=path)
    except ll.PersistenceError:
        pass


@FUZZ
@given(data=st.data())
def test_mutated_checkpoints_resume_or_give_a_persistence_error(files, data):
    src = files["folder"] / "checkpoint.safetensors"
    bad = files["folder"] / "bad_ckpt.safetensors"
    if data.draw(st.booleans()):
        bad.write_bytes(_apply_bytes(src.read_bytes(), data.draw(_byte_edits())))
    else:
        _, meta = network_file.read_file(src)
        _resealed(src, bad, data.draw(_mutations(meta, files["marker"])))
    _resume(files, bad)
    try:
        ll.load(bad)
    except ll.PersistenceError:
        pass
    _after(files)


def test_the_fuzzed_originals_load_and_resume(files):
    # the fuzz tests' base files are valid: their failures come from the mutations
    assert _same_network(ll.load(files["folder"] / "net.safetensors"), files["net"])
    X, Y = files["X"], files["Y"]
    _, info = ll.train_network(X, Y, _ckpt_layers(), _ckpt_options(),
                               resume_from=files["folder"] / "checkpoint.safetensors")
    assert info.iterations == 4
    np.testing.assert_equal(_paths({"a": [1]}), [(), ("a",), ("a", 0)])
