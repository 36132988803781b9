"""What a new user meets first: the command line's --version, --help and
errors, the package's exports and import cost, a missing optional package,
MATLAB's image-size order, and the demo (one epoch, in a subprocess)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import layerlab as ll
from layerlab.cli import main as cli_main
from layerlab.errors import MissingPackageError
from layerlab.sources import SOURCES

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args, cwd, env=None, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def test_the_library_declares_a_torch_range_and_the_makefile_pins_it_first():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (torch_req,) = [d for d in project["dependencies"] if d.startswith("torch")]
    assert torch_req.startswith("torch>=") and "==" not in torch_req
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT")
    assert set(project["optional-dependencies"]["onnx"]) >= {"onnx>=1.16", "onnxruntime>=1.18"}
    makefile = (ROOT / "Makefile").read_text()
    pin = makefile.index('pip install --quiet "$(TORCH)"')
    assert "TORCH ?= torch==2.13.0" in makefile and pin < makefile.index('-e ".[test]"')


def test_version_flag_prints_layerlab_and_torch_versions(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0
    import torch
    assert capsys.readouterr().out.strip() == f"layerlab {ll.__version__} (torch {torch.__version__})"


def test_help_explains_the_sources_it_names(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())       # unwrapped
    for name, sentence in SOURCES.items():
        assert f"{name}: {sentence}" in text


def test_cli_error_names_the_command_once(capsys):
    assert cli_main(["check", "no_such_module_xyz:Thing", "--input-size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerlab check: error: ") and err.count("layerlab check:") == 1, err


def test_import_leaves_the_studies_until_used(tmp_path):
    code = ("import sys, layerlab as ll; print('layerlab.experiments' in sys.modules); "
            "ll.experiments.STUDIES; print('layerlab.experiments' in sys.modules)")
    run = run_python("-c", code, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "True"]


def test_exports_what_users_meet():
    from layerlab.checking import LayerCheckError
    from layerlab.training.callbacks import IterationInfo
    assert ll.LayerCheckError is LayerCheckError and ll.IterationInfo is IterationInfo
    assert len(set(ll.__all__)) == len(ll.__all__)
    missing = [name for name in ll.__all__ if not hasattr(ll, name)]
    assert not missing


def test_export_onnx_without_onnx_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)         # "not installed"
    net = ll.Network([ll.FeatureInput(3), ll.FullyConnected(2), ll.Softmax(),
                      ll.Classification()])
    with pytest.raises(MissingPackageError) as err:
        ll.export_onnx(net, tmp_path / "net.onnx")
    message = str(err.value)
    assert "'onnx'" in message and 'pip install "layerlab[onnx]"' in message
    assert "layer" not in message.replace("layerlab", "")  # blames no layer
    assert isinstance(err.value, ImportError) and not (tmp_path / "net.onnx").exists()


def test_image_input_in_matlab_order_says_sizes_are_channel_first():
    with pytest.raises(ll.LayerError, match=r"\(C, H, W\).*ImageInput\(\(1, 28, 28\)\)"):
        ll.ImageInput((28, 28, 1))
    with pytest.raises(ll.LayerError, match=r"ImageInput\(\(3, 32, 32\)\)"):
        ll.ImageInput((32, 32, 3))
    assert ll.ImageInput((1, 28, 28)).input_size == (1, 28, 28)
    assert ll.ImageInput((3, 9, 11)).input_size == (3, 9, 11)   # small images stay allowed


def test_demo_writes_to_the_cache_folder_by_default(monkeypatch, tmp_path):
    from layerlab import demo
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    assert demo.default_out() == str(tmp_path / "demo")


def test_demo_figure_shows_right_then_wrong_classifications(tmp_path):
    from layerlab import demo
    X = np.zeros((6, 1, 4, 4), dtype=np.float32)
    Y = np.array([1, 2, 3, 4, 5, 6])
    YPred = np.array([1, 0, 3, 0, 5, 6])
    path, right, wrong = demo.save_examples(X, Y, YPred, str(tmp_path / "e.png"), n=3)
    assert (right, wrong) == (3, 2) and Path(path).stat().st_size > 0


@pytest.mark.slow
def test_demo_runs_one_epoch_and_leaves_the_current_folder_alone(tmp_path):
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    run = run_python("-m", "layerlab", "demo", "--max-epochs", "1", "--out", str(out), cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    # the demo checks its layer with every test (no GPU here: the device test skips)
    assert re.search(r"Test Summary: 2\d Passed, 0 Failed, [1-3] Skipped\.", run.stdout), \
        run.stdout[-2000:]
    (accuracy,) = re.findall(r"Test accuracy: (\d\.\d+)", run.stdout)
    assert 0.6 < float(accuracy) <= 1.0        # one epoch: about 0.9 (chance 0.1)
    assert "39 iterations" in run.stdout
    assert SOURCES["seed post"].split()[0] in run.stdout
    for name in ("digits.png", "training_progress.png", "test_examples.png",
                 "seed_network.safetensors"):
        assert (out / name).stat().st_size > 0, name
    assert list(cwd.iterdir()) == []
    net = ll.load(out / "seed_network.safetensors")
    X, Y, _ = ll.datasets.digits_test()
    assert abs(float((ll.classify(net, X[:500]) == Y[:500]).mean()) - float(accuracy)) < 0.1


def test_the_wheel_carries_the_kernels_c_sources(tmp_path):
    """The compiled kernels are built from their C sources on the user's
    machine: an installed (non-editable) layerlab must have them."""
    import zipfile
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--no-build-isolation", str(ROOT), "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if out.returncode != 0 and "No module named" in out.stderr:
        pytest.skip(f"cannot build a wheel here: {out.stderr.strip()[-200:]}")
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("layerlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {f"layerlab/kernels/{p.name}" for p in (ROOT / "layerlab" / "kernels").glob("*.c")}
    assert sources and sources <= names
