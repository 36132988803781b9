"""A memory-mapped array larger than 1 GB trains with bounded memory: only the
mini-batches being read are held (peak RSS measured in a subprocess)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

N, D = 2304, 1 << 17          # 2304 x 131072 float32 = 1.2 GB

SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    import layerlab as ll

    Xm = np.load(sys.argv[1], mmap_mode="r")
    Y = np.arange(Xm.shape[0]) % 2
    layers = [ll.FeatureInput(Xm.shape[1]), ll.FullyConnected(2), ll.Softmax(),
              ll.Classification()]
    opts = ll.training_options("sgdm", max_epochs=1, mini_batch_size=64, verbose=False,
                               seed=0, initial_learn_rate=0.1)
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    before = peak()
    net, info = ll.train_network(Xm, Y, layers, opts)
    print(f"{before:.0f} {peak():.0f} {info.iterations} {info.training_accuracy[-1]:.1f}")
""")


def write_sparse_npy(path, n, d):
    """An .npy of n x d float32 whose rows hold +-1 in their first 16 values
    (the class) and zeros elsewhere: a sparse file, written without mapping it."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        offset = f.tell()
        f.truncate(offset + n * d * 4)
        for i in range(n):
            f.seek(offset + i * d * 4)
            f.write(np.full(16, 1.0 if i % 2 else -1.0, dtype="<f4").tobytes())


@pytest.mark.slow
def test_gigabyte_memmap_trains_with_bounded_peak_rss(tmp_path):
    path = tmp_path / "x.npy"
    write_sparse_npy(path, N, D)
    assert os.path.getsize(path) > 2**30
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(path)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    before, after, iterations, acc = map(float, run.stdout.split())
    assert iterations == N // 64
    assert acc == 100.0                     # it did learn from the file
    # mini-batches of 32 MiB, two read ahead: far below the 1.2 GB file
    # (reading it whole peaks ~2 GB above the start)
    assert after - before < 400, (before, after)
