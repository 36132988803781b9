"""The seed post "Defining Your Own Network Layer (Revisited)", in layerlab.

1. The same network without batch normalization (the ELU paper: batch
   normalization did not improve ELU networks).
2. A fixed alpha = 1.0. In MATLAB this needed a second class, because
   learnability is fixed in the class definition; in layerlab it is a
   constructor argument of the same layer class (or ``layer.freeze("alpha")``).

The post (MATLAB R2017b, one GPU): no BN 0.9808 in 12.7 s; fixed alpha, no BN
0.9702 in 11.8 s.

Run: python examples/revisited.py [--max-epochs N]
"""

import argparse

import layerlab as ll
from layerlab.demo import SeedELU, seed_layers


def train_and_test(name, layers, options, data):
    XTrain, YTrain, XTest, YTest = data
    net, info = ll.train_network(XTrain, YTrain, layers, options)
    accuracy = (ll.classify(net, XTest) == YTest).mean()
    print(f"{name}: accuracy {accuracy:.4f}, training time {info.time_elapsed:.1f} s")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    args = parser.parse_args()

    XTrain, YTrain, _ = ll.datasets.digits_train()
    XTest, YTest, _ = ll.datasets.digits_test()
    data = (XTrain, YTrain, XTest, YTest)
    options = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=0)

    train_and_test("no BN, learnable alpha", seed_layers(SeedELU(20), batch_norm=False),
                   options, data)
    fixed = SeedELU(20, alpha=1.0, learnable=False)   # same class, alpha not learned
    train_and_test("no BN, fixed alpha 1.0", seed_layers(fixed, batch_norm=False),
                   options, data)
    print("(the post: 0.9808 in 12.7 s and 0.9702 in 11.8 s on a GPU)")


if __name__ == "__main__":
    main()
