"""The seed post "Defining Your Own Network Layer", in layerlab.

An ELU layer with one learnable alpha per channel (written as a user writes
a layer: see ``SeedELU`` in layerlab/demo.py), in the post's network with
batch normalization, trained with the default SGDM options on the digits.

The post (MATLAB R2017b, one GPU): 1170 iterations, 13.8 s, test accuracy 0.9872.

Run: python examples/defining_your_own_layer.py [--max-epochs N]
"""

import argparse

import layerlab as ll
from layerlab.demo import SeedELU, seed_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    args = parser.parse_args()

    XTrain, YTrain, _ = ll.datasets.digits_train()
    XTest, YTest, _ = ll.datasets.digits_test()
    layers = seed_layers(SeedELU(20), batch_norm=True)
    options = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=0)
    net, info = ll.train_network(XTrain, YTrain, layers, options)

    accuracy = (ll.classify(net, XTest) == YTest).mean()
    print(f"BN + learnable ELU: accuracy {accuracy:.4f}, training time "
          f"{info.time_elapsed:.1f} s (the post: 0.9872, 13.8 s on a GPU)")


if __name__ == "__main__":
    main()
