"""Regression: predict each digit's rotation angle, as MATLAB's example
"Train Convolutional Neural Network for Regression" does on its digits.

The network and options follow that example (3x3 convolutions with 8, 16
and 32 filters, batch normalization, ReLU, average pooling, dropout 0.2, a
fully connected layer with one output and a regression layer; SGDM, initial
learn rate 1e-3 dropped by 10x every 20 epochs, 30 epochs), in layerlab's
channel-first layout. It prints the table (RMSE instead of accuracy), the
test RMSE in degrees and the share of predictions within 10 degrees.

Run: python examples/regress_angles.py [--max-epochs 30]
"""

import argparse

import numpy as np
import torch

import layerlab as ll


def angle_layers() -> list:
    def conv_bn_relu(filters):
        return [ll.Convolution2d(3, filters, padding="same"), ll.BatchNormalization(), ll.ReLU()]
    return [ll.ImageInput((1, 28, 28)),
            *conv_bn_relu(8), ll.AveragePooling2d(2, stride=2),
            *conv_bn_relu(16), ll.AveragePooling2d(2, stride=2),
            *conv_bn_relu(32), *conv_bn_relu(32),
            ll.Dropout(0.2), ll.FullyConnected(1), ll.Regression()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-epochs", type=int, default=30)
    args = p.parse_args()
    torch.manual_seed(0)
    X, _, angles = ll.datasets.digits_train()
    XTest, _, angles_test = ll.datasets.digits_test()
    options = ll.training_options("sgdm", initial_learn_rate=1e-3, learn_rate_schedule="piecewise",
                                  learn_rate_drop_factor=0.1, learn_rate_drop_period=20,
                                  max_epochs=args.max_epochs, seed=0)
    net, info = ll.train_network(X, angles, angle_layers(), options)
    predicted = np.asarray(net.predict(XTest)).reshape(-1)
    error = predicted - angles_test
    print(f"Test RMSE: {np.sqrt(np.mean(error ** 2)):.2f} degrees; within 10 degrees: "
          f"{100 * np.mean(np.abs(error) < 10):.1f}%  (training: {info.time_elapsed:.0f} s)")


if __name__ == "__main__":
    main()
