"""check_layer: every built-in layer and torch.nn module passes, each wrong
layer of the zoo fails the test named after its bug (and no other), the
seed's typo is caught with the derivative, index and values, and
train_network / the CLI use it. The new tests' own mechanics:
tests/test_check_layer_pytorch.py."""

import inspect
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import layerlab as ll
import layerlab.layers
from layerlab.checking import TEST_NAMES, TRAINING_TESTS, LayerCheckError, check_layer
from layerlab.checking import contract
from layerlab.checking.gradients import ATOL, RTOL
from layerlab.checking.harness import Subject
from layerlab.checking.testdata import KINK_MARGIN, input_values, van_der_corput
from layerlab.cli import main as cli_main

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zoo_wrong_layers as zoo  # noqa: E402

#: seconds each (a new Python process; torch.compile): run for the layers
#: whose bug they catch, in test_builtin_layers_compile_and_load_in_a_new_process
#: and for the torch.nn modules
SLOW_TESTS = ("compile", "save_load_fresh_process")


@pytest.fixture(autouse=True)
def _tests_folder_importable(monkeypatch):
    """A new Python process (save_load_fresh_process) finds the zoo's module
    as a user's would: on PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))

# ---------------------------------------------------------------------------
# every built-in layer passes
# ---------------------------------------------------------------------------
# class name -> [(constructor args, constructor kwargs, input size), ...]
# A new built-in layer class needs an entry here (test_every_builtin_layer_has_a_case).
BUILTIN_CASES = {
    "ELU": [((4,), {}, (4, 5, 5)), ((), {}, (3, 4, 4))],
    "ReLU": [((), {}, (3, 4, 4))],
    "LeakyReLU": [((), {}, (3, 4, 4)), ((), dict(learnable=True, num_channels=3), (3, 4, 4))],
    "PReLU": [((), {}, (3, 4, 4))],
    "CReLU": [((), {}, (3, 4, 4))],
    "Maxout": [((2,), {}, (4, 3, 3))],
    "FullyConnectedMaxout": [((3, 2), {}, (2, 3, 3))],
    "Tanh": [((), {}, (5,))],
    # a torch.nn module as a layer (the torch.nn classes are checked on their own below)
    "ModuleLayer": [((torch.nn.Linear(5, 3),), {}, (5,))],
    "Sigmoid": [((), {}, (5,))],
    # the last two: rows 8+ wide, the compiled few-channel kernel's inputs (in float32)
    "Convolution2d": [((3, 4), {}, (2, 6, 6)), ((3, 2), dict(stride=2, padding=1), (2, 5, 5)),
                      ((3, 4), {}, (2, 10, 12)), ((4, 3), dict(padding="same"), (1, 9, 10))],
    # the last: 2048+ inputs to few outputs (the compiled dense kernel in float32)
    "FullyConnected": [((5,), {}, (3, 4, 4)), ((4,), dict(drop_connect=0.5), (6,)),
                       ((3,), {}, (3, 26, 27))],
    "Dropout": [((0.5,), {}, (3, 4, 4))],
    "SpatialDropout": [((0.5,), {}, (3, 4, 4))],
    "ImageInput": [(((3, 4, 4),), {}, (3, 4, 4)),
                   (((3, 4, 4),), dict(normalization="none"), (3, 4, 4))],
    "FeatureInput": [((5,), {}, (5,)), ((5,), dict(normalization="zscore"), (5,))],
    "Addition": [((2,), {}, [(3, 4, 4), (3, 4, 4)])],
    "Concatenation": [((2,), {}, [(2, 3, 3), (3, 3, 3)])],
    "BatchNormalization": [((), {}, (3, 4, 4)), ((), dict(backward="formula"), (3, 4, 4))],
    "LayerNormalization": [((), {}, (3, 4, 4))],
    "Classification": [((), {}, (5,))],
    "Regression": [((), {}, (3,))],
    "Softmax": [((), {}, (5,))],
    "MaxPooling2d": [((2,), {}, (2, 4, 4)), ((3,), dict(stride=2, padding=1), (2, 5, 5))],
    "AveragePooling2d": [((2,), {}, (2, 4, 4))],
    "GlobalAveragePooling2d": [((), {}, (2, 4, 4))],
}


def builtin_layer_classes():
    return sorted(name for name in layerlab.layers.__all__
                  if inspect.isclass(getattr(layerlab.layers, name))
                  and issubclass(getattr(layerlab.layers, name), ll.Layer))


@pytest.mark.parametrize("name", builtin_layer_classes())
def test_every_builtin_layer_has_a_case(name):
    if name not in BUILTIN_CASES:
        pytest.fail(f"built-in layer {name} has no entry in BUILTIN_CASES of "
                    f"tests/test_check_layer.py: add its constructor arguments and an input "
                    f"size so that check_layer checks it")


def _builtin_cases():
    for name in builtin_layer_classes():
        for k, (args, kwargs, size) in enumerate(BUILTIN_CASES.get(name, [])):
            yield pytest.param(name, args, kwargs, size, id=f"{name}-{k}")


@pytest.mark.parametrize("name,args,kwargs,size", list(_builtin_cases()))
def test_builtin_layer_passes_check_layer(name, args, kwargs, size):
    layer = getattr(layerlab.layers, name)(*args, **kwargs)
    report = check_layer(layer, size, verbose=False, skip=SLOW_TESTS)
    known = {t for (n, a, k), tests in KNOWN_BUILTIN_FAILURES.items() for t in tests
             if n == name and (args, sorted(kwargs.items())) == (a, list(k))}
    assert set(report.failed_tests) <= known, report.text
    # the numerical tests really ran (not skipped)
    for test in ("runs", "types", "backward_sizes", "gradients", "independent_observations",
                 "inputs_unchanged", "backward_twice", "extreme_inputs", "memory_layouts",
                 "low_precision"):
        assert report[test].passed or test in known, report.text


#: bugs check_layer found in built-in layers that their owners are fixing
#: (reported to them): (class, args, sorted kwargs) -> the tests it fails
KNOWN_BUILTIN_FAILURES: dict = {
    # none today; CReLU's in-place backward (second derivatives) and
    # Convolution2d's empty-batch weight gradient were found here and fixed
}


SOME_BUILTINS = [(ll.BatchNormalization, (), (3, 4, 4)), (ll.FullyConnected, (4,), (6,))]


def test_builtin_layers_compile_and_load_in_a_new_process():
    """The two slow tests on two built-ins (learnables, State); torch.compile
    of every built-in against eager: tests/test_pytorch_citizen.py."""
    from layerlab.checking.checks_saving import start_fresh_process
    subjects = [Subject(cls(*args), [size]) for cls, args, size in SOME_BUILTINS]
    started = [start_fresh_process(s) for s in subjects]   # the processes run together
    for s, handle in zip(subjects, started):
        result = handle.finish(s)
        assert result.passed, (s.label, result.message)
    for cls, args, size in SOME_BUILTINS:
        report = check_layer(cls(*args), size, tests=["compile"], verbose=False)
        assert report["compile"].passed, report.text


TORCH_MODULES = [(lambda: torch.nn.Conv2d(2, 3, 3, padding=1), (2, 5, 5)),
                 (lambda: torch.nn.Linear(4, 3), (4,)),
                 (lambda: torch.nn.LayerNorm(6), (6,)),
                 (lambda: torch.nn.BatchNorm2d(2), (2, 4, 4))]


@pytest.mark.parametrize("factory,size", TORCH_MODULES,
                         ids=["Conv2d", "Linear", "LayerNorm", "BatchNorm2d"])
def test_correct_torch_nn_modules_pass_everything(factory, size):
    module = factory()
    # a new process (seconds) for the one with buffers only
    skip = () if isinstance(module, torch.nn.BatchNorm2d) else ("save_load_fresh_process",)
    report = check_layer(module, size, verbose=False, skip=skip)
    assert report.passed, report.text
    for test in ("gradients", "memory_layouts", "extreme_inputs", "compile",
                 "low_precision", "backward_twice"):
        assert report[test].passed, report.text
    assert report["vmap"].passed or factory().__class__ is torch.nn.BatchNorm2d


# ---------------------------------------------------------------------------
# the seed's typo and its correction
# ---------------------------------------------------------------------------
def test_seed_typo_fails_gradients_naming_the_derivative_index_and_values():
    report = check_layer(zoo.TypoELU(20), (20, 24, 24), verbose=False, skip=SLOW_TESTS)
    assert report.failed_tests == ["gradients"], report.text
    (m,) = report["gradients"].details
    assert m.derivative == "dLdalpha" and m.source == "backward"
    assert m.checked == m.total == 20 and m.wrong == 20
    # expected is the true derivative sum(dLdZ * (exp(min(X,0)) - 1)) over
    # N, H, W at that channel, recomputed here independently
    s = Subject(zoo.TypoELU(20), [(20, 24, 24)])
    layer = s.copy()
    X = s.inputs(2)[0]
    Z = layer.predict(X)
    dLdZ = s.output_gradients([Z])[0]
    true = ((torch.exp(X.clamp(max=0)) - 1) * dLdZ).sum(dim=(0, 2, 3))
    typo = (torch.exp(X.clamp(max=0) - 1) * dLdZ).sum(dim=(0, 2, 3))
    c = m.index[0]
    assert m.index == (c, 0, 0)
    assert m.expected == pytest.approx(float(true[c]), rel=1e-8)
    assert m.got == pytest.approx(float(typo[c]), rel=1e-12)
    assert m.error == pytest.approx(float((true - typo).abs().max()), rel=1e-8)
    text = report.text
    assert "dLdalpha" in text and f"index {m.index}" in text
    gpu = int(torch.cuda.is_available())        # the device test runs on a GPU
    assert f"Test Summary: {len(TEST_NAMES) - 6 + gpu} Passed, 1 Failed, {3 - gpu} Skipped." \
        in text


def test_corrected_seed_elu_passes():
    report = check_layer(zoo.CorrectELU(20), (20, 24, 24), verbose=False)
    assert report.passed, report.text
    assert report["gradients"].passed and report["frozen_learnables"].passed
    # device (without a GPU), state (it has none)
    assert report.count("skipped") == 2 - int(torch.cuda.is_available())


class Slightly(zoo.CorrectELU):
    """dLdX off by 1e-4 relative."""
    def backward(self, X, Z, dLdZ, memory):
        dLdX, dLdA = super().backward(X, Z, dLdZ, memory)
        return dLdX * (1 + 1e-4), dLdA


def test_tolerance_separates_a_small_error_from_rounding():
    """A derivative off by 1e-4 relative fails; the exact one passes with
    a largest relative error far under the 1e-6 tolerance."""
    assert check_layer(Slightly(3), (3, 4, 4), verbose=False,
                       tests=["gradients"]).failed_tests == ["gradients"]
    msg = check_layer(zoo.CorrectELU(3), (3, 4, 4), verbose=False,
                      tests=["gradients"])["gradients"].message
    worst = float(msg.split("largest error ")[1].split(" ")[0])
    assert worst < 1e-2 and ATOL == RTOL == 1e-6           # 1% of the tolerance at most


# ---------------------------------------------------------------------------
# the zoo
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", list(zoo.WRONG_LAYERS), ids=lambda c: c.__name__)
def test_each_wrong_layer_fails_the_test_named_after_its_bug(cls):
    if getattr(cls, "NEEDS", None) == "double_backward" and \
            not contract.bridge_supports_double_backward():
        pytest.skip("the autograd bridge does not differentiate a hand-written backward")
    args, size = zoo.WRONG_LAYERS[cls]
    if hasattr(cls, "setup"):
        cls.setup()
    report = check_layer(cls(*args), size, verbose=False,
                         skip=[t for t in SLOW_TESTS if t != cls.BUG])
    # exactly the test named after the bug: no spill into unrelated failures
    # (on a GPU the device test runs too, and it sees some of these bugs as well)
    also = GPU_ALSO_FAILS.get(cls.__name__, set()) if torch.cuda.is_available() else set()
    assert cls.BUG in report.failed_tests, report.text
    assert set(report.failed_tests) - {cls.BUG} <= also, report.text


# bugs that the GPU-only tests catch as well: a float64 output, a tensor kept
# as a plain attribute (left on the CPU), undeclared noise (other draws there)
GPU_ALSO_FAILS = {"Float64Output": {"device"}, "PlainAttributeGain": {"device"},
                  "UndeclaredNoise": {"device", "low_precision"}}


class Declared(zoo.UndeclaredBatchCoupling):
    couples_observations = True

    def predict(self, X):            # prediction must not depend on the batch
        return X

    def forward(self, X):
        return X - X.mean(dim=0, keepdim=True), None


class DeclaredBoth(Declared):
    differs_in_training = True


def test_batch_coupled_layer_passes_once_it_declares_it():
    assert check_layer(Declared(), (5,), verbose=False,
                       skip=SLOW_TESTS).failed_tests == ["train_vs_predict"]
    report = check_layer(DeclaredBoth(), (5,), verbose=False, skip=SLOW_TESTS)
    assert report.passed, report.text
    assert "couples_observations" in report["independent_observations"].message


def test_wrong_layer_messages_say_what_and_where():
    r = check_layer(zoo.UnsummedScale(3), (3, 4, 4), verbose=False, skip=SLOW_TESTS)
    assert "dLds has size (2, 3), expected (3,)" in r["backward_sizes"].message
    assert "not summed over the 2 observations" in r["backward_sizes"].message
    assert r["gradients"].skipped and "backward_sizes failed" in r["gradients"].message
    r = check_layer(zoo.Float64Output(), (5,), verbose=False, tests=["types"])
    assert "predict returned float64 for float32 input" in r["types"].message
    r = check_layer(zoo.WrongSignTanh(), (3, 4), verbose=False, tests=["gradients"])
    (m,) = r["gradients"].details
    assert m.derivative == "dLdX" and m.wrong == m.checked == 24


def test_exception_in_layer_code_is_reported_with_its_line():
    class Broken(ll.Layer):
        def predict(self, X):
            return X.view(-1, 7)          # only works for some sizes

    report = check_layer(Broken(), (5,), verbose=False, skip=SLOW_TESTS)
    assert "runs" in report.failed_tests
    assert "RuntimeError" in report["runs"].message
    assert "test_check_layer.py:" in report["runs"].message
    assert report["gradients"].skipped


# ---------------------------------------------------------------------------
# the tests' mechanics
# ---------------------------------------------------------------------------
def test_report_text_and_api():
    out = io.StringIO()
    report = check_layer(ll.ELU(3), (3, 4, 4), stream=out, skip=SLOW_TESTS)
    text = out.getvalue()
    assert text.startswith("Checking layer ELU, input size (3, 4, 4)")
    n = len(TEST_NAMES) - len(SLOW_TESTS)
    gpu = int(torch.cuda.is_available())        # the device test runs on a GPU
    assert f"Test Summary: {n - 2 + gpu} Passed, 0 Failed, {2 - gpu} Skipped." in text
    assert "Time elapsed:" in text
    assert [r.name for r in report.results] == [t for t in TEST_NAMES if t not in SLOW_TESTS]
    for r in report.results:
        assert r.status in ("passed", "failed", "skipped") and r.message
        assert f"{r.name}" in text
    assert report.count("passed") == n - 2 + gpu and report.passed
    # report.text is what verbose printed (but for the time), str() one line
    assert report.text.splitlines()[:-1] == text.strip().splitlines()[:-1]
    assert str(report).count("\n") == 0 and "0 Failed" in str(report)
    with pytest.raises(KeyError):
        report["nope"]
    quiet = io.StringIO()
    check_layer(ll.ReLU(), (3,), verbose=False, stream=quiet)
    assert quiet.getvalue() == ""


def test_selected_tests_and_bad_arguments():
    report = check_layer(ll.ReLU(), (4,), tests=["gradients", "types"], verbose=False)
    assert [r.name for r in report.results] == ["types", "gradients"]
    with pytest.raises(ll.LayerError, match="unknown test"):
        check_layer(ll.ReLU(), (4,), tests=["gradient"])
    with pytest.raises(ll.LayerError, match="input_size"):
        check_layer(ll.ReLU(), (4, 0))
    with pytest.raises(ll.LayerError, match="takes 2 input"):
        check_layer(ll.Addition(2), [(3,), (3,), (3,)])
    with pytest.raises(ll.LayerError, match="expected a layerlab.Layer or a torch.nn.Module"):
        check_layer(42, (3,))
    with pytest.raises(ll.LayerError, match="unknown test"):
        check_layer(ll.ReLU(), (4,), skip=["gradient"])
    report = check_layer(ll.ReLU(), (4,), tests=["gradients", "types"], skip=["types"],
                         verbose=False)
    assert [r.name for r in report.results] == ["gradients"]


def test_layer_and_random_state_left_unchanged():
    layer = ll.PReLU()                       # creates its learnable in initialize
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_layer(layer, (3, 4, 4), verbose=False, skip=SLOW_TESTS)
    assert torch.equal(torch.rand(3), expected)
    assert layer.learnable_names == []       # the copy was initialised, not the layer


def test_test_data_are_halton_values_away_from_kinks():
    u = van_der_corput(7, 2)
    assert np.allclose(u, [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875])
    X = input_values((2, 3, 8, 8))
    assert X.dtype == torch.float64
    assert float(X.abs().min()) >= KINK_MARGIN and float(X.abs().max()) <= 2.0
    assert X.unique().numel() == X.numel()              # no ties for a max
    assert torch.equal(X, input_values((2, 3, 8, 8)))   # deterministic


class NoisyScale(ll.Layer):
    """Multiplies by fresh noise in training (declared): autograd of a
    random forward can only be checked with the randomness fixed."""
    differs_in_training = True
    is_stochastic = True

    def predict(self, X):
        return X

    def forward(self, X):
        return X * (1 + torch.rand_like(X)), None


def test_stochastic_layer_randomness_is_fixed_for_the_gradient_check():
    report = check_layer(NoisyScale(), (6,), verbose=False, skip=SLOW_TESTS)
    assert report.passed, report.text
    assert report["determinism"].skipped and "is_stochastic" in report["determinism"].message


def test_kink_inside_the_layer_is_recognised_not_failed():
    class Shifted(ll.Layer):
        """relu(X - c) with c on a test input: a kink the data cannot avoid."""
        def predict(self, X):
            return torch.relu(X - self.c)

    s = Subject(Shifted(), [(6,)])
    layer = Shifted()
    layer.c = float(s.inputs(2)[0][0, 2])               # exactly at an input
    report = check_layer(layer, (6,), verbose=False, tests=["gradients"])
    assert report["gradients"].passed, report.text
    assert "kink" in report["gradients"].message


def test_frozen_learnables_stay_frozen_in_the_users_layer():
    layer = ll.ELU(3)
    layer.freeze("alpha")
    report = check_layer(layer, (3, 4, 4), verbose=False, skip=SLOW_TESTS)
    assert report.passed and not layer.is_learnable("alpha")
    # the gradient test still checked dLdalpha (on an unfrozen copy)
    assert "dLdalpha (all 3 elements)" in report["gradients"].message


class StaleBatchNorm(ll.BatchNormalization):
    """Forgets to update its running statistics in training."""
    def forward(self, X):
        Z = torch.nn.functional.batch_norm(X, None, None, self.scale, self.offset,
                                           True, 0.0, self.epsilon)
        return Z, None


def test_state_checks_running_statistics():
    report = check_layer(ll.BatchNormalization(), (3, 4, 4), verbose=False, tests=["state"])
    assert "forward updated trained_mean, trained_variance" in report["state"].message
    report = check_layer(StaleBatchNorm(), (3, 4, 4), verbose=False, skip=SLOW_TESTS)
    assert report.failed_tests == ["state"]
    assert "did not update" in report["state"].message


def test_save_load_round_trip():
    report = check_layer(zoo.CorrectELU(3), (3, 4, 4), verbose=False,
                         tests=["save_load", "save_load_fresh_process"])
    assert report["save_load"].passed, report.text
    assert report["save_load_fresh_process"].passed, report.text

    class LocalTanh(ll.Layer):                   # cannot be found again when loading
        def predict(self, X):
            return torch.tanh(X)

    report = check_layer(LocalTanh(), (4,), verbose=False, skip=["compile"])
    assert report.failed_tests == ["save_load", "save_load_fresh_process"]
    assert "define it at module level" in report["save_load"].message
    assert check_layer(ll.Addition(2), [(3,), (3,)], verbose=False,
                       tests=["save_load"])["save_load"].skipped


def test_second_derivatives_checked_and_failed():
    report = check_layer(ll.Tanh(), (5,), verbose=False, tests=["second_derivatives"])
    assert report["second_derivatives"].passed

    class DetachedSquare(ll.Layer):
        """X^2 whose autograd first derivative is right but cut from the graph."""
        def predict(self, X):
            return _SquareFn.apply(X)

    report = check_layer(DetachedSquare(), (5,), verbose=False,
                         tests=["gradients", "second_derivatives"])
    assert report.failed_tests == ["second_derivatives"], report.text


@pytest.mark.skipif(not contract.bridge_supports_double_backward(),
                    reason="the autograd bridge does not differentiate a hand-written backward")
def test_second_derivatives_through_a_hand_written_backward():
    report = check_layer(zoo.CorrectELU(3), (3, 4, 4), verbose=False,
                         tests=["second_derivatives"])
    assert report["second_derivatives"].passed, report.text
    assert "hand-written backward differentiated" in report["second_derivatives"].message

    class FirstOnly(zoo.DetachedSecondDerivativeELU):
        backward_is_differentiable = False

    report = check_layer(FirstOnly(3), (3, 4, 4), verbose=False,
                         tests=["second_derivatives"])
    assert report["second_derivatives"].skipped
    assert "backward_is_differentiable = False" in report["second_derivatives"].message


class _SquareFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X):
        ctx.save_for_backward(X)
        return X * X

    @staticmethod
    def backward(ctx, g):
        (X,) = ctx.saved_tensors
        return 2 * X.detach() * g                       # not differentiable again


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_device_skipped_without_gpu():
    report = check_layer(ll.ReLU(), (3,), verbose=False, tests=["device"])
    assert report["device"].skipped and "no GPU" in report["device"].message


def test_device_comparison_logic_on_the_cpu():
    """The GPU test's comparison, run with the CPU standing in for the GPU
    (the GPU itself: test_device_on_gpu)."""
    from layerlab.checking.checks_basic import compare_devices
    cpu = torch.device("cpu")
    assert compare_devices(Subject(zoo.CorrectELU(3), [(3, 4, 4)]), cpu) == []
    assert compare_devices(Subject(ll.Dropout(0.5), [(3, 4, 4)]), cpu) == []
    problems = compare_devices(Subject(zoo.Float64Output(), [(5,)]), cpu)
    assert problems and "predict on cpu (float32 input) returned a float64 tensor" in problems[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_on_gpu():
    report = check_layer(zoo.CorrectELU(3), (3, 4, 4), verbose=False, tests=["device"])
    assert report["device"].passed, report.text
    report = check_layer(ll.Dropout(0.5), (3, 4, 4), verbose=False, tests=["device"])
    assert report["device"].passed, report.text


# ---------------------------------------------------------------------------
# train_network checks user layers first
# ---------------------------------------------------------------------------
def _features(n=64, d=5):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g)
    return X, (X[:, 0] > 0).long().numpy()


def _net(act):
    return [ll.FeatureInput(5), ll.FullyConnected(4), act, ll.FullyConnected(2),
            ll.Softmax(), ll.Classification()]


class _TypoELUFeatures(zoo.TypoELU):
    """The typo'd ELU with alpha of size (C,) for features (N, C)."""
    def __init__(self, num_channels):
        super().__init__(num_channels)
        self.alpha = torch.rand(num_channels)

    def backward(self, X, Z, dLdZ, memory):
        dLdX = dLdZ * torch.where(X > 0, 1.0, self.alpha + Z)
        return dLdX, (torch.exp(X.clamp(max=0) - 1) * dLdZ).sum(0)


def test_train_network_refuses_a_wrong_user_layer():
    X, Y = _features()
    opts = ll.training_options("sgdm", max_epochs=1, mini_batch_size=32, verbose=False)
    with pytest.raises(LayerCheckError) as info:
        ll.train_network(X, Y, _net(_TypoELUFeatures(4)), opts)
    text = str(info.value)
    assert "_TypoELUFeatures" in text and "gradients" in text and "dLdalpha" in text
    assert "check_layers=False" in text
    assert "The tests run before training: signatures, runs" in text
    assert len(info.value.reports) == 1 and not info.value.reports[0].passed
    assert isinstance(info.value, ll.LayerError)
    # the option turns it off
    opts = ll.training_options("sgdm", max_epochs=1, mini_batch_size=32, verbose=False,
                               check_layers=False)
    net, _ = ll.train_network(X, Y, _net(_TypoELUFeatures(4)), opts)
    assert net is not None


def test_train_network_checks_user_layers_only_by_default(monkeypatch):
    ck = sys.modules["layerlab.checking.check_layer"]   # the package's name is the function
    seen = []
    real = ck.check_layer

    def spy(layer, *a, **k):
        seen.append(type(layer).__name__)
        assert k["tests"] == list(TRAINING_TESTS)        # the fast subset
        return real(layer, *a, **k)

    monkeypatch.setattr(ck, "check_layer", spy)
    X, Y = _features()

    class MyTanh(ll.Layer):
        def predict(self, X):
            return torch.tanh(X)

    base = dict(max_epochs=1, mini_batch_size=32, verbose=False, seed=1)
    ll.train_network(X, Y, _net(MyTanh()), ll.training_options("sgdm", **base))
    assert seen == ["MyTanh"]
    seen.clear()
    ll.train_network(X, Y, _net(MyTanh()), ll.training_options("sgdm", check_layers=True,
                                                                **base))
    assert seen == ["FeatureInput", "FullyConnected", "MyTanh", "FullyConnected", "Softmax",
                    "Classification"]
    seen.clear()
    ll.train_network(X, Y, _net(MyTanh()), ll.training_options("sgdm", check_layers=False,
                                                                **base))
    assert seen == []
    with pytest.raises(ll.OptionError, match="check_layers"):
        ll.training_options("sgdm", check_layers="yes")


def test_the_check_does_not_change_training_results():
    X, Y = _features()

    class MyTanh(ll.Layer):
        def predict(self, X):
            return torch.tanh(X)

    runs = []
    for check in (True, False):
        opts = ll.training_options("sgdm", max_epochs=2, mini_batch_size=32, verbose=False,
                                   seed=3, check_layers=check)
        _, info = ll.train_network(X, Y, _net(MyTanh()), opts)
        runs.append(info.training_loss)
    assert np.array_equal(runs[0], runs[1])


# ---------------------------------------------------------------------------
# layerlab check on the command line
# ---------------------------------------------------------------------------
ZOO = os.path.join(HERE, "zoo_wrong_layers.py")


def test_cli_exit_status_and_report(capsys):
    rc = cli_main(["check", f"{ZOO}:TypoELU", "--input-size", "4", "5", "5", "--args", "[4]",
                   "--skip", "compile", "save_load_fresh_process"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED   gradients" in out and "dLdalpha" in out and "1 Failed" in out
    # a file's class loads back in a new process under the file's module name
    rc = cli_main(["check", f"{ZOO}:CorrectELU", "--input-size", "4,5,5",
                   "--args", '{"num_channels": 4}', "--tests", "save_load_fresh_process"])
    out = capsys.readouterr().out
    assert rc == 0 and "1 Passed, 0 Failed" in out, out
    rc = cli_main(["check", "layerlab.layers:Addition", "--input-size", "3,2", "3,2",
                   "--tests", "gradients"])
    assert rc == 0 and "input sizes (3, 2), (3, 2)" in capsys.readouterr().out


def test_cli_bad_arguments(capsys):
    assert cli_main(["check", "no_such_module_xyz:Thing", "--input-size", "3"]) == 2
    assert "cannot import" in capsys.readouterr().err
    assert cli_main(["check", f"{ZOO}:Nope", "--input-size", "3"]) == 2
    assert "has no class 'Nope'" in capsys.readouterr().err
    assert cli_main(["check", f"{ZOO}:CorrectELU", "--input-size", "4", "--args", "{bad"]) == 2
    assert "--args" in capsys.readouterr().err
    assert cli_main(["check", "layerlab.layers:ReLU", "--input-size", "x"]) == 2
    assert "--input-size" in capsys.readouterr().err
    for bad in (["4,,4"], ["4,4,"], [",4"], ["4", "0"], ["4,-1"]):
        assert cli_main(["check", "layerlab.layers:ReLU", "--input-size", *bad]) == 2, bad
        err = capsys.readouterr().err
        assert "--input-size" in err and repr(" ".join(bad)) in err, err
    assert cli_main(["check", f"{ZOO}:CorrectELU", "--input-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "missing 1 required positional argument" in err and "pass the arguments with " \
        "--args" in err and "num_channels" in err


def test_cli_as_a_process():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    proc = subprocess.run([sys.executable, "-m", "layerlab", "check",
                           "zoo_wrong_layers:WrongSignTanh", "--input-size", "3",
                           "--tests", "runs", "gradients"],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED   gradients" in proc.stdout and "dLdX" in proc.stdout


class OneWrongElement(zoo.CorrectELU):
    """dLdX wrong at a single element of 23040: sampling alone would miss it;
    autograd's derivative of forward points the element checks at it."""
    def backward(self, X, Z, dLdZ, memory):
        dLdX, dLdA = super().backward(X, Z, dLdZ, memory)
        dLdX = dLdX.clone()
        if dLdX.shape[0] > 1:
            dLdX[1, 7, 5, 9] += 0.01
        return dLdX, dLdA


def test_a_bug_at_one_element_is_found():
    report = check_layer(OneWrongElement(20), (20, 24, 24), verbose=False,
                         tests=["gradients"])
    assert report.failed_tests == ["gradients"]
    (m,) = report["gradients"].details
    assert m.derivative == "dLdX" and m.index == (1, 7, 5, 9) and m.wrong == 1
    assert m.checked < m.total == 2 * 20 * 24 * 24
    assert m.got - m.expected == pytest.approx(0.01, rel=1e-6)


def test_non_finite_outputs_are_reported_by_runs():
    class Log(ll.Layer):                    # defined for positive inputs only
        def predict(self, X):
            return torch.log(X)

    report = check_layer(Log(), (4,), verbose=False, skip=SLOW_TESTS)
    assert "runs" in report.failed_tests
    assert "gives nan at index" in report["runs"].message
    assert report["gradients"].skipped
