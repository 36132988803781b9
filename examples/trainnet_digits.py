"""The seed network trained with ``trainnet`` (MATLAB R2024a's workflow):
no output layer, the loss by name, metrics accuracy and fscore in the
table and the record, ``testnet`` on the test set, TensorBoard logs.

The layers are the seed post's (image input 28x28x1, conv 5x5x20, batch
normalization, ELU, fully connected 10, softmax) without the
classification layer; the options are MATLAB's SGDM defaults with the
seed's 30 epochs. With ``--compare`` the same network is also trained with
``train_network`` and a ``Classification`` layer, same seed, for the two
test accuracies side by side.

Run: python examples/trainnet_digits.py [--max-epochs 30] [--log-dir runs/seed] [--compare]
Then: tensorboard --logdir runs/seed
"""

import argparse

import numpy as np

import layerlab as ll


def seed_layers_without_loss() -> list:
    return [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20), ll.BatchNormalization(),
            ll.ELU(20), ll.FullyConnected(10), ll.Softmax()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-dir", default=None, help="TensorBoard logs and history.csv here")
    p.add_argument("--compare", action="store_true",
                   help="also train with train_network and a Classification layer")
    p.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    args = p.parse_args()

    X, Y, _ = ll.datasets.digits_train()
    XTest, YTest, _ = ll.datasets.digits_test()
    options = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=args.seed,
                                  metrics=["accuracy", "fscore"], log_dir=args.log_dir,
                                  validation_data=(XTest[:500], YTest[:500]),
                                  validation_frequency=100, precision=args.precision)
    net, info = ll.trainnet(X, Y, seed_layers_without_loss(), "crossentropy", options)

    result = ll.testnet(net, XTest, YTest, ["accuracy", "fscore", "crossentropy"])
    print(f"trainnet test accuracy {100 * result['accuracy']:.2f}%, "
          f"fscore {result['fscore']:.4f}, crossentropy {result['crossentropy']:.4f}")
    scores = ll.minibatchpredict(net, XTest[:5])
    print("first test labels:", ll.scores2label(scores, info.classes).tolist(),
          "true:", YTest[:5].tolist())
    print(f"mini-batch fscore at the last iteration: "
          f"{info.history['training_fscore'][-1]:.4f}")
    if args.log_dir:
        print(f"TensorBoard logs in {args.log_dir} (tensorboard --logdir {args.log_dir})")

    if args.compare:
        layers = seed_layers_without_loss() + [ll.Classification()]
        plain = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=args.seed,
                                    verbose=False)
        net2, _ = ll.train_network(X, Y, layers, plain)
        acc2 = float(np.mean(ll.classify(net2, XTest) == YTest))
        print(f"train_network test accuracy {100 * acc2:.2f}%")


if __name__ == "__main__":
    main()
