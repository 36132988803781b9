"""Train the seed network from a folder of images, with augmentation, as
MATLAB's imageDatastore / augmentedImageDatastore / imageDataAugmenter do.

Without a folder, the synthetic training and test digits are written as
PNGs in class folders (``<folder>/train/<digit>/<i>.png``,
``<folder>/test/...``); with ``--folder PATH`` your own images are used
(one subfolder per class, resized to 28x28 grayscale), 80% of each class
for training. Images are decoded by Pillow a mini-batch at a time in
background threads and augmented afresh every epoch (rotation +-10 degrees,
translation +-2 pixels); the script prints the table and the accuracy on
the held-out images.

Run: python examples/train_from_folder.py [--folder PATH] [--max-epochs 10] [--per-class N]
"""

import argparse
import os
import tempfile

import numpy as np

import layerlab as ll
from layerlab.demo import seed_layers


def write_digits(root: str, per_class: int | None = None) -> None:
    """The synthetic digits as PNGs: ``root/train/<label>/`` and
    ``root/test/<label>/`` (all 500 of each class, or the first ``per_class``)."""
    from PIL import Image
    for split, (X, Y, _) in (("train", ll.datasets.digits_train()),
                             ("test", ll.datasets.digits_test())):
        pixels = np.clip(np.round(X[:, 0] * 255), 0, 255).astype(np.uint8)
        keep = np.concatenate([np.flatnonzero(Y == c)[:per_class] for c in np.unique(Y)])
        for i in np.sort(keep):
            im, label = pixels[i], Y[i]
            folder = os.path.join(root, split, str(label))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(im).save(os.path.join(folder, f"{i:05d}.png"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", help="a folder with one subfolder of images per class")
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--per-class", type=int, default=None,
                   help="write only this many digits of each class (a quick try)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            train, test = ll.ImageDatastore(args.folder).split_each_label(0.8, seed=0)
        else:
            write_digits(tmp, args.per_class)
            train, test = ll.ImageDatastore(os.path.join(tmp, "train")), \
                ll.ImageDatastore(os.path.join(tmp, "test"))
        print(f"{len(train)} training images, {len(test)} test images, "
              f"classes {train.classes}")
        augmenter = ll.ImageDataAugmenter(rand_rotation=(-10, 10), rand_x_translation=(-2, 2),
                                          rand_y_translation=(-2, 2))
        data = ll.AugmentedImageDatastore((28, 28), train, augmenter=augmenter)
        layers = seed_layers()
        layers[-3] = ll.FullyConnected(len(train.classes))   # as many outputs as classes
        options = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=0,
                                      shuffle="every-epoch")
        net, info = ll.train_network(data, layers, options)
        predicted = ll.classify(net, ll.AugmentedImageDatastore((28, 28), test))
        accuracy = np.mean(predicted == test.labels)
        print(f"Test accuracy: {100 * accuracy:.2f}% ({len(test)} images; training "
              f"{info.time_elapsed:.0f} s)")


if __name__ == "__main__":
    main()
