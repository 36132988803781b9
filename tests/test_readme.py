"""The README's layer example runs as printed (with one epoch instead of
30 so that the suite stays quick): the layer passes check_layer, trains,
classifies the test set, and the network is saved and loaded back."""

import pathlib
import re
import sys
import types

import torch

import layerlab as ll

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_layer_example_runs_and_its_layer_passes_the_checks(capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)                        # the example saves a file
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 'll.training_options("sgdm")' in code
    assert len(code.strip().splitlines()) <= 30
    code = code.replace('ll.training_options("sgdm")',
                        'll.training_options("sgdm", max_epochs=1, verbose=False, seed=0)')
    # run as a module of its own, as a user's script is (its layer class must
    # be found by import path for check_layer's save/load round trip)
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, str(README), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    namespace = module.__dict__
    printed = capsys.readouterr().out
    gpu = int(torch.cuda.is_available())        # the device test runs on a GPU
    # no new process for a script's class
    assert f"Test Summary: {20 + gpu} Passed, 0 Failed, {3 - gpu} Skipped." in printed
    net, info = namespace["net"], namespace["info"]        # net: as loaded back
    assert isinstance(net, ll.Network) and info.iterations == 39
    assert info.training_accuracy[-1] > 50    # learned something in one epoch (chance: 10%)
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", printed).group(1))
    YPred, YTest = namespace["YPred"], namespace["YTest"]
    assert abs(accuracy - (YPred == YTest).mean()) < 1e-4 and accuracy > 0.6
    assert (tmp_path / "my_elu_net.safetensors").stat().st_size > 0
    XTest = namespace["XTest"]
    assert (ll.classify(net, XTest[:300]) == YPred[:300]).all()   # net: the loaded one


def test_readme_graph_example_builds_valid_networks(capsys):
    code = next(c for c in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                if "ll.LayerGraph(" in c)
    namespace: dict = {"ll": ll}                      # imported by the first example
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "res_4_proj" in printed and "Total parameters: 29,226" in printed
    net = ll.Network(namespace["g"])                   # validates the skip connection
    assert ("r1/out", "add/in2") in namespace["g"].connections
    assert sum(p.numel() for p in net.parameters()) == 63394


def test_readme_pytorch_example_runs(capsys):
    code = next(c for c in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                if "torch.func" in c)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert "ELU output (8, 4, 6, 6)" in capsys.readouterr().out
    assert namespace["per_sample"].shape == (8, 4)
    assert namespace["elu"].alpha.grad is not None            # the penalty reached alpha
    net = namespace["net"]
    assert net.layer("conv2d_1").learn_rate_factor("bias") == 2.0
    assert net.sizes["lazy_linear_1"] == ((10,),)
