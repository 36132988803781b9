"""ImageDatastore, AugmentedImageDatastore and ImageDataAugmenter: listing,
labels, splitting, bad folders and images, the augmentation geometry against
exact references, reproducibility and exact resume."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import layerlab as ll
from layerlab.datastores.sources import batch_seed
from layerlab.errors import DataError


def _write(folder, images, labels, ext="png"):
    for i, (im, lab) in enumerate(zip(images, labels)):
        os.makedirs(folder / str(lab), exist_ok=True)
        Image.fromarray(im).save(folder / str(lab) / f"img{i:03d}.{ext}")


def _digits(n=64, size=8, seed=0):
    rng = np.random.default_rng(seed)
    Y = np.array(["cat", "dog"])[np.arange(n) % 2]
    base = np.zeros((n, size, size), dtype=np.uint8)
    base[Y == "cat", :, : size // 2] = 200      # left half bright for cats
    base[Y == "dog", :, size // 2:] = 200
    noise = rng.integers(0, 50, base.shape).astype(np.uint8)
    return base + noise, Y


@pytest.fixture
def folder(tmp_path):
    ims, Y = _digits()
    _write(tmp_path / "pets", ims, Y)
    return tmp_path / "pets", ims, Y


def _layers(size=8, channels=1):
    return [ll.ImageInput((channels, size, size)), ll.Convolution2d(3, 2),
            ll.BatchNormalization(), ll.ReLU(), ll.FullyConnected(2), ll.Softmax(),
            ll.Classification()]


def _opts(**kw):
    return ll.training_options("sgdm", **{**dict(max_epochs=2, mini_batch_size=16, seed=5,
                                                 verbose=False, shuffle="every-epoch"), **kw})


def test_lists_files_labels_and_counts(folder):
    path, ims, Y = folder
    imds = ll.ImageDatastore(path)
    assert len(imds) == 64 and imds.classes == ["cat", "dog"]
    assert imds.count_each_label() == {"cat": 32, "dog": 32}
    assert all(os.path.basename(os.path.dirname(f)) == lab
               for f, lab in zip(imds.files, imds.labels))
    X = imds.read([0, 1])
    assert X.shape == (2, 1, 8, 8) and X.dtype == torch.float32
    first = np.asarray(Image.open(imds.files[0]), dtype=np.float32) / 255
    assert np.allclose(X[0, 0].numpy(), first)


def test_split_each_label(folder):
    imds = ll.ImageDatastore(folder[0])
    train, test = imds.split_each_label(0.75)
    assert train.count_each_label() == {"cat": 24, "dog": 24}
    assert test.count_each_label() == {"cat": 8, "dog": 8}
    assert not set(train.files) & set(test.files)
    # in file order without a seed, at random (reproducibly) with one
    cats = [f for f in imds.files if "/cat/" in f]
    assert [f for f in train.files if "/cat/" in f] == cats[:24]
    a, _ = imds.split_each_label(5, seed=1)
    b, _ = imds.split_each_label(5, seed=1)
    assert a.files == b.files and len(a) == 10 and a.files != train.files[:10]
    with pytest.raises(DataError, match="fraction"):
        imds.split_each_label(1.5)


def test_training_from_a_folder_equals_the_same_pixels_in_memory(folder):
    path, ims, Y = folder
    imds = ll.ImageDatastore(path)
    X = np.stack([np.asarray(Image.open(f), dtype=np.float32)[None] / 255 for f in imds.files])
    net_a, _ = ll.train_network(X, imds.labels, _layers(), _opts())
    net_d, info = ll.train_network(imds, _layers(), _opts())
    for (k, a), b in zip(net_a.state_dict().items(), net_d.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k
    # classify on a datastore returns its class names
    assert set(ll.classify(net_d, imds)) <= {"cat", "dog"}
    assert (ll.classify(net_d, imds) == imds.labels).mean() > 0.9


def test_bad_folders_and_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        ll.ImageDatastore(tmp_path / "empty")
    ims, _ = _digits(8)
    _write(tmp_path / "one", ims, ["cat"] * 8)
    with pytest.raises(DataError, match="one class only"):
        ll.train_network(ll.ImageDatastore(tmp_path / "one"), _layers(), _opts())
    # a corrupt image is named
    ims, Y = _digits(32)
    _write(tmp_path / "corrupt", ims, Y)
    bad = tmp_path / "corrupt" / "dog" / "img005.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match="img005.png"):
        ll.train_network(ll.ImageDatastore(tmp_path / "corrupt"), _layers(),
                         _opts(mini_batch_size=32))
    # mixed sizes without resizing: the first misfit is named, with the remedy
    _write(tmp_path / "mixed", ims, Y)
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "mixed" / "cat" / "img004.png")
    with pytest.raises(DataError, match=r"img004.png.*\(1, 9, 8\).*AugmentedImageDatastore"):
        ll.train_network(ll.ImageDatastore(tmp_path / "mixed"), _layers(), _opts())
    # ... and resized, it trains
    aug = ll.AugmentedImageDatastore((8, 8), ll.ImageDatastore(tmp_path / "mixed"))
    assert aug.read(range(32)).shape == (32, 1, 8, 8)


def test_color_and_resizing(folder):
    imds = ll.ImageDatastore(folder[0], color="rgb")
    assert imds.read([0]).shape == (1, 3, 8, 8)
    aug = ll.AugmentedImageDatastore((4, 6), ll.ImageDatastore(folder[0]),
                                     color_preprocessing="gray2rgb")
    X = aug.read([0, 3])
    assert X.shape == (2, 3, 4, 6) and torch.equal(X[:, 0], X[:, 2])
    gray = ll.AugmentedImageDatastore((8, 8), imds, color_preprocessing="rgb2gray").read([0])
    assert torch.allclose(gray, ll.ImageDatastore(folder[0]).read([0]), atol=1e-2)


# -- the augmenter's geometry, against exact references ----------------------
def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_translation_is_a_shift_with_fill():
    X = torch.rand(3, 2, 7, 9)
    Y = ll.ImageDataAugmenter(rand_x_translation=(2, 2)).augment(X, _gen())
    ref = torch.zeros_like(X)
    ref[..., 2:] = X[..., :-2]
    assert torch.allclose(Y, ref, atol=1e-5)
    Y = ll.ImageDataAugmenter(rand_y_translation=(-1, -1), fill_value=0.5).augment(X, _gen())
    ref = torch.full_like(X, 0.5)
    ref[..., :-1, :] = X[..., 1:, :]
    assert torch.allclose(Y, ref, atol=1e-5)


def test_rotation_and_reflections():
    X = torch.rand(2, 1, 8, 8)
    Y = ll.ImageDataAugmenter(rand_rotation=(90, 90)).augment(X, _gen())
    assert torch.allclose(Y, torch.rot90(X, 1, (2, 3)), atol=1e-5)   # counter-clockwise
    X = torch.rand(40, 1, 5, 6)
    Y = ll.ImageDataAugmenter(rand_x_reflection=True).augment(X, _gen())
    flipped = [bool(torch.allclose(y, x.flip(-1), atol=1e-5)) for x, y in zip(X, Y)]
    kept = [bool(torch.allclose(y, x, atol=1e-5)) for x, y in zip(X, Y)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 35
    Y = ll.ImageDataAugmenter(rand_y_reflection=True).augment(X, _gen())
    assert all(torch.allclose(y, x, atol=1e-5) or torch.allclose(y, x.flip(-2), atol=1e-5)
               for x, y in zip(X, Y))


def test_scale_and_shear_match_their_matrices():
    aug = ll.ImageDataAugmenter(rand_scale=(2, 2), rand_x_shear=(45, 45))
    M = aug.matrices(1, _gen())[0]
    # p_out = R Hy Hx s F p: with only scale 2 and x shear 45 degrees
    assert torch.allclose(M, torch.tensor([[2.0, 2.0, 0.0], [0.0, 2.0, 0.0]],
                                          dtype=torch.float64))
    # a bright pixel at the centre-right moves as the matrix says
    X = torch.zeros(1, 1, 9, 9)
    X[0, 0, 4, 5] = 1.0    # centred coordinates (x=1, y=0) -> (2, 0)
    Y = ll.ImageDataAugmenter(rand_scale=(2, 2)).augment(X, _gen())
    assert Y[0, 0, 4, 6] == Y[0, 0].max()
    with pytest.raises(DataError, match="rand_x_shear"):
        ll.ImageDataAugmenter(rand_x_shear=(0, 90))
    with pytest.raises(DataError, match="rand_rotation"):
        ll.ImageDataAugmenter(rand_rotation=(20, -20))


def test_augmentation_reproducible_and_fresh_each_epoch(folder):
    aug = ll.AugmentedImageDatastore((8, 8), ll.ImageDatastore(folder[0]),
                                     augmenter=ll.ImageDataAugmenter(rand_rotation=(-30, 30)))
    idx = list(range(8))
    a = aug.read(idx, batch_seed(1, epoch=1, batch=0))
    assert torch.equal(a, aug.read(idx, batch_seed(1, epoch=1, batch=0)))
    assert not torch.allclose(a, aug.read(idx, batch_seed(1, epoch=2, batch=0)))
    assert torch.equal(aug.read(idx), ll.ImageDatastore(folder[0]).read(idx))  # no seed: none


def test_resume_with_augmentation_is_exact(folder, tmp_path):
    def data():
        return ll.AugmentedImageDatastore(
            (8, 8), ll.ImageDatastore(folder[0]),
            augmenter=ll.ImageDataAugmenter(rand_rotation=(-20, 20), rand_x_translation=(-1, 1),
                                            rand_x_reflection=True))

    opts = dict(max_epochs=3)
    straight, info_s = ll.train_network(data(), _layers(), _opts(**opts))
    ckpt = str(tmp_path / "ckpt")
    _, info_i = ll.train_network(data(), _layers(), _opts(
        **opts, checkpoint_path=ckpt, output_fn=lambda i: i.iteration == 10))   # stops in epoch 3
    assert info_i.iterations == 10
    resumed, info_r = ll.train_network(data(), _layers(), _opts(**opts), resume_from=ckpt)
    for (k, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(a, b), k
    assert np.array_equal(info_r.training_loss, info_s.training_loss)
    # and the augmentation did change the data: without it the run differs
    plain = ll.AugmentedImageDatastore((8, 8), ll.ImageDatastore(folder[0]))
    _, info_p = ll.train_network(plain, _layers(), _opts(**opts))
    assert not np.array_equal(info_p.training_loss, info_s.training_loss)


def test_readme_data_example_runs(tmp_path, monkeypatch):
    """The README's data-sources example, on a small folder of digits."""
    import pathlib
    import re
    X, Y, _ = ll.datasets.make_digits(20, seed=0)
    _write(tmp_path / "digits", (X[:, 0] * 255).astype(np.uint8), Y)
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
                if "ll.ImageDatastore(" in b)
    code = code.replace('ll.training_options("sgdm", seed=0)',
                        'll.training_options("sgdm", seed=0, max_epochs=2, mini_batch_size=16, '
                        'verbose=False)')
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(readme), "exec"), namespace)
    assert namespace["info"].iterations == 2 * (160 // 16)
    assert 0.0 <= namespace["accuracy"] <= 1.0 and len(namespace["test"]) == 40


@pytest.mark.slow
def test_train_from_folder_example_runs():
    import subprocess
    import sys
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "train_from_folder.py")
    run = subprocess.run([sys.executable, example, "--max-epochs", "2", "--per-class", "30"],
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Test accuracy" in run.stdout and "300 training images" in run.stdout


def test_decoded_images_are_cached_up_to_the_limit_and_subsets_read_their_own(tmp_path):
    import layerlab.datastores.image as image_module
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for k in range(3):
            Image.fromarray(np.full((4, 4), 40 * k + (100 if c == "b" else 0),
                                    np.uint8)).save(tmp_path / c / f"{k}.png")
    imds = ll.ImageDatastore(tmp_path)
    calls = []
    real = image_module.decode_pixels

    def counting(path, color):
        calls.append(path)
        return real(path, color)

    image_module.decode_pixels = counting
    try:
        first = imds.read(range(len(imds)))
        again = imds.read(range(len(imds)))
        assert len(calls) == len(imds)                 # the second epoch decoded nothing
        assert torch.equal(first, again)
        imds2 = ll.ImageDatastore(tmp_path)
        imds2.cache_bytes = 2 * 16                     # room for two 4x4 gray images
        imds2.read(range(len(imds2)))
        imds2.read(range(len(imds2)))
        assert len(calls) == len(imds) + 2 * len(imds2) - 2
        train, test = imds.split_each_label(2, seed=0)
        for sub in (train, test):                      # the right image for each file
            for i, f in enumerate(sub.files):
                expected = torch.from_numpy(real(f, "gray")).float() / 255
                assert torch.equal(sub.read([i])[0], expected)
    finally:
        image_module.decode_pixels = real
