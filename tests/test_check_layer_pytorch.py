"""check_layer's tests beyond MATLAB's: the mechanics of each new test on a
right and a wrong case, check_function, torch.nn modules, the pytest helper,
the report's printing and the random-numbers-in-__init__ warning."""

import io
import os
import sys

import pytest
import torch

import layerlab as ll
from layerlab.checking import FUNCTION_TESTS, check_function, check_layer
from layerlab.checking.gradients import RTOL

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zoo_wrong_layers as zoo  # noqa: E402

QUICK = ("compile", "save_load_fresh_process")


# ---------------------------------------------------------------------------
# the gradient tolerance (kills a loosened one)
# ---------------------------------------------------------------------------
class RelativeError(zoo.CorrectELU):
    """The seed ELU with dLdX off by a relative ``error``."""
    error = 0.0

    def backward(self, X, Z, dLdZ, memory):
        dLdX, dLdA = super().backward(X, Z, dLdZ, memory)
        return dLdX * (1 + self.error), dLdA


class Error3e6(RelativeError):
    error = 3e-6


class Error1e8(RelativeError):
    error = 1e-8


def test_relative_gradient_error_3e6_fails_and_1e8_passes():
    """MATLAB's tolerance 1e-6: a tolerance loosened 10x lets 3e-6 pass."""
    bad = check_layer(Error3e6(3), (3, 4, 4), tests=["gradients"], verbose=False)
    assert bad.failed_tests == ["gradients"]
    (m,) = bad["gradients"].details
    assert m.derivative == "dLdX" and m.relative == pytest.approx(3e-6, rel=0.05)
    good = check_layer(Error1e8(3), (3, 4, 4), tests=["gradients"], verbose=False)
    assert good.passed, good.text
    assert RTOL == 1e-6


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------
def test_print_of_the_report_does_not_repeat_it(capsys):
    print(ll.check_layer(ll.Tanh(), (5,), tests=["runs", "gradients"]))
    out = capsys.readouterr().out
    assert out.count("Test Summary: 2 Passed, 0 Failed, 0 Skipped.") == 2   # report, then str
    assert out.count("passed   gradients") == 1
    report = ll.check_layer(ll.Tanh(), (5,), tests=["gradients"], verbose=False)
    assert capsys.readouterr().out == ""
    assert "passed   gradients" in report.text and "\n" not in str(report)


class DrawsInInit(ll.Layer):
    def __init__(self, n=3):
        super().__init__()
        self.w = ll.Learnable(torch.rand(n))

    def predict(self, X):
        return X * self.w


class FixedInit(DrawsInInit):
    def __init__(self, n=3):
        ll.Layer.__init__(self)
        self.w = ll.Learnable(torch.linspace(0.5, 1.5, n))


def test_warning_for_random_numbers_drawn_in_init():
    out = io.StringIO()
    layer = DrawsInInit(3)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    report = check_layer(layer, (3,), tests=["runs"], stream=out)
    assert torch.equal(torch.get_rng_state(), state)          # the caller's stream kept
    assert len(report.warnings) == 1 and "initialize" in report.warnings[0]
    assert "warning  DrawsInInit.__init__ draws random numbers" in out.getvalue()
    assert report.passed                                     # a warning fails nothing
    assert check_layer(FixedInit(3), (3,), tests=["runs"], verbose=False).warnings == []

    class DrawDeclared(DrawsInInit):                 # redrawn under the training seed
        def __init__(self, n=3):
            ll.Layer.__init__(self)
            self.w = ll.Learnable(draw=lambda: torch.rand(n))

    assert check_layer(DrawDeclared(3), (3,), tests=["runs"], verbose=False).warnings == []


# ---------------------------------------------------------------------------
# each new test: a right case passes, a wrong one fails with its reason
# ---------------------------------------------------------------------------
def test_extreme_inputs_names_the_nan_gradient():
    r = check_layer(zoo.WhereELU(), (3, 4), tests=["extreme_inputs"], verbose=False)
    msg = r["extreme_inputs"].message
    assert r.failed_tests == ["extreme_inputs"] and "dLdX is nan" in msg
    assert "+-10000 (float32)" in msg and "every output is finite" in msg
    # the same function written safely (clamped exponent) passes
    class SafeELU(ll.Layer):
        def predict(self, X):
            return torch.where(X > 0, X, torch.exp(X.clamp(max=0)) - 1)
    assert check_layer(SafeELU(), (3, 4), tests=["extreme_inputs"], verbose=False).passed


def test_extreme_inputs_include_declared_kinks():
    class KinkAt1(ll.Layer):
        """sqrt(|X - 1|): infinite derivative at its kink 1."""
        kinks = (1.0,)

        def predict(self, X):
            return (X - 1).abs().sqrt()

    r = check_layer(KinkAt1(), (4,), tests=["extreme_inputs"], verbose=False)
    assert r.failed_tests == ["extreme_inputs"]
    assert "declared kinks [0.0, 1.0]" in r["extreme_inputs"].message


def test_backward_twice_and_memory():
    r = check_layer(zoo.InPlaceMemoryELU(3), (3, 4, 4), tests=["backward_twice"],
                    verbose=False)
    assert "backward modified its memory in place" in r["backward_twice"].message
    assert "second backward over the same graph" in r["backward_twice"].message
    assert check_layer(zoo.CorrectELU(3), (3, 4, 4), tests=["backward_twice"],
                       verbose=False).passed


def test_inputs_unchanged_names_the_argument():
    r = check_layer(zoo.InPlaceOutputGradientTanh(), (3, 4), tests=["inputs_unchanged"],
                    verbose=False)
    assert "backward modified its argument dLdZ in place" in r["inputs_unchanged"].message

    class InPlacePredict(ll.Layer):
        def predict(self, X):
            return X.mul_(2)

    r = check_layer(InPlacePredict(), (3,), tests=["inputs_unchanged"], verbose=False)
    assert "predict modified its input X in place" in r["inputs_unchanged"].message


def test_memory_layouts_cases():
    r = check_layer(zoo.ViewScale(), (2, 3, 3), tests=["memory_layouts"], verbose=False)
    msg = r["memory_layouts"].message
    assert "non-contiguous X" in msg and "channels-last X" in msg and "view" in msg

    class ContiguousGradientOnly(ll.Layer):
        """A backward that reads dLdZ's storage as if it were contiguous."""
        def predict(self, X):
            return 3 * X

        def backward(self, X, Z, dLdZ, memory):
            flat = torch.as_strided(dLdZ, (dLdZ.numel(),), (1,))
            return (3 * flat.reshape(dLdZ.shape),)

    r = check_layer(ContiguousGradientOnly(), (2, 3, 3), tests=["memory_layouts"],
                    verbose=False)
    assert "dLdZ: dLdX differs from the contiguous case" in r["memory_layouts"].message
    r = check_layer(ll.Convolution2d(3, 2), (2, 5, 5), tests=["memory_layouts"],
                    verbose=False)
    assert r.passed and "channels-last" in r["memory_layouts"].message


def test_determinism_and_a_declared_tolerance():
    r = check_layer(zoo.UndeclaredNoise(), (5,), tests=["determinism"], verbose=False)
    assert "training output differs between two runs" in r["determinism"].message

    class TinyNoise(zoo.UndeclaredNoise):
        determinism_tolerance = 1e-6

        def forward(self, X):
            return X * (1 + 1e-9 * torch.rand_like(X)), None

    assert check_layer(TinyNoise(), (5,), tests=["determinism"], verbose=False).passed


def test_vmap_per_sample_gradients_of_learnables():
    r = check_layer(ll.ELU(3), (3, 4, 4), tests=["vmap"], verbose=False)
    assert r.passed and "inputs and learnables" in r["vmap"].message

    class DataDependent(ll.Layer):
        """Python control flow on tensor values: vmap cannot batch it."""
        def predict(self, X):
            return X if bool((X > 100).any()) else 2 * X

    r = check_layer(DataDependent(), (3,), tests=["vmap"], verbose=False)
    assert r.failed_tests == ["vmap"] and "vmap of predict raised" in r["vmap"].message
    r = check_layer(ll.BatchNormalization(), (3, 4, 4), tests=["vmap"], verbose=False)
    assert r["vmap"].skipped and "couples_observations" in r["vmap"].message


def test_observations_empty_batch_derivatives_are_sums():
    class MeanGradient(ll.Layer):
        """dLdw as a mean over the observations: 0/0 for an empty batch."""
        def __init__(self):
            super().__init__()
            self.w = ll.Learnable(torch.ones(1))

        def predict(self, X):
            return self.w * X

        def backward(self, X, Z, dLdZ, memory):
            return self.w * dLdZ, (dLdZ * X).sum(1).mean(0).reshape(1) * X.shape[0]

    r = check_layer(MeanGradient(), (3,), tests=["observations"], verbose=False)
    assert "dLdw on an empty batch is nan" in r["observations"].message
    r = check_layer(zoo.FlattenMinusOne(), (2, 3), tests=["observations"], verbose=False)
    assert "predict on an empty batch" in r["observations"].message


def test_low_precision_keeps_the_format():
    r = check_layer(zoo.PlainAttributeGain(5), (5,), tests=["low_precision"], verbose=False)
    # the checker's own words, or the bridge's (which names the layer at once)
    message = r["low_precision"].message
    assert ("float16 in: predict's output is float32" in message
            or "returned torch.float32 for torch.float16 input" in message), message

    class ConstantInFloat16(ll.Layer):
        """1e-8 vanishes in float16: X / (X - X + 1e-8) divides by zero."""
        def predict(self, X):
            return (X - X + 1e-8) * 1e8

    r = check_layer(ConstantInFloat16(), (5,), tests=["low_precision"], verbose=False)
    assert r.failed_tests == ["low_precision"]
    r = check_layer(ll.Tanh(), (5,), tests=["low_precision"], verbose=False)
    assert r.passed and "float16 and bfloat16" in r["low_precision"].message


def test_compile_catches_a_compile_only_path():
    r = check_layer(zoo.CompiledShortcutELU(), (4,), tests=["compile"], verbose=False)
    assert "inference: Z differs" in r["compile"].message
    assert check_layer(ll.Tanh(), (5,), tests=["compile"], verbose=False).passed


def test_fresh_process_loads_module_classes_and_names_the_problem():
    zoo.GlobalSettingGain.setup()
    env = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = HERE + os.pathsep + env
    try:
        r = check_layer(zoo.GlobalSettingGain(), (4,), tests=["save_load",
                        "save_load_fresh_process"], verbose=False)
    finally:
        os.environ["PYTHONPATH"] = env
    assert r["save_load"].passed                 # in this process the setting is the same
    assert "in a new Python process: the loaded layer predicts differently" in \
        r["save_load_fresh_process"].message


# ---------------------------------------------------------------------------
# any module, any function
# ---------------------------------------------------------------------------
class _WrongCube(torch.autograd.Function):
    """X^3 with the derivative 2 X^2 (should be 3 X^2)."""

    @staticmethod
    def forward(X):
        return X ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (X,) = ctx.saved_tensors
        return 2 * X * X * g


class _ModuleWithWrongFunction(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, X):
        return _WrongCube.apply(self.lin(X))


def test_a_torch_module_with_a_wrong_function_inside_fails_gradients():
    r = check_layer(_ModuleWithWrongFunction(), (4,), skip=QUICK, verbose=False)
    assert "gradients" in r.failed_tests
    names = {m.derivative for m in r["gradients"].details}
    assert "dLdX" in names and any("weight" in n for n in names)


def test_check_function():
    good = check_function(torch.tanh, torch.zeros(2, 5), verbose=False)
    assert good.passed and [x.name for x in good] == [t for t in ll.checking.TEST_NAMES
                                                      if t in FUNCTION_TESTS]
    bad = check_function(_WrongCube.apply, torch.zeros(2, 5), verbose=False)
    assert "gradients" in bad.failed_tests and bad.layer == "function _WrongCube.apply"
    # an old-style Function (no setup_context / vmap rule) fails vmap
    two = check_function(lambda a, b: a * b + b, torch.zeros(2, 3), torch.zeros(2, 3),
                         verbose=False)
    assert two.passed and "dLdX2" in two["gradients"].message
    with pytest.raises(ll.LayerError, match="example tensor"):
        check_function(torch.tanh)


# ---------------------------------------------------------------------------
# the pytest helper
# ---------------------------------------------------------------------------
def test_assert_layer_ok():
    report = ll.testing.assert_layer_ok(ll.Tanh(), (5,), skip=QUICK)
    assert report.passed and "compile" not in report
    with pytest.raises(AssertionError) as info:
        ll.testing.assert_layer_ok(zoo.WrongSignTanh(), (3, 4), skip=QUICK)
    text = str(info.value)
    assert "check_layer failed gradients" in text and "Test Summary:" in text
    assert "FAILED   gradients" in text                       # the whole report
    ll.testing.assert_layer_ok(zoo.WrongSignTanh(), (3, 4), tests=["runs"])


def test_readme_check_layer_example_runs():
    import pathlib
    import re
    readme = pathlib.Path(HERE).parent / "README.md"
    code = next(c for c in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
                if "assert_layer_ok" in c)
    namespace: dict = {}
    exec(compile(code, str(readme), "exec"), namespace)
    namespace["test_my_layer"]()
    assert namespace["report"].passed
