"""A study of your own: is my new activation better than ReLU?

Define a layer, say what one run is, list the configurations, and let
layerlab repeat every configuration with shared seeds, test the differences
(paired t-test and Wilcoxon) and write a report (Markdown, PNG, CSV):

    python examples/my_study.py            # under a minute on 2 cores
"""

import torch

import layerlab as ll
from layerlab.experiments import Metric, Study


class Swish(ll.Layer):
    """Z = X * sigmoid(X) (Ramachandran et al. 2017); autograd gives the backward."""

    def predict(self, X):
        return X * torch.sigmoid(X)


def run(activation, seed):
    """One run: train a small MLP on the disc and measure its test error."""
    (X, Y), (XTest, YTest) = ll.datasets.disc_train_test(1000, seed=seed)
    layers = [ll.FeatureInput(2, normalization="none")]
    for _ in range(4):
        layers += [ll.FullyConnected(32), activation()]
    layers += [ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    options = ll.training_options("sgdm", max_epochs=20, mini_batch_size=100,
                                  initial_learn_rate=0.1, verbose=False, seed=seed)
    net, info = ll.train_network(X, Y, layers, options)
    return {"error": 100 * float((ll.classify(net, XTest) != YTest).mean()),
            "time_s": info.time_elapsed,
            "training_loss": info.training_loss}          # a curve, kept in curves.csv


study = Study("swish-vs-relu", run,
              configurations={"ReLU": dict(activation=ll.ReLU),
                              "Swish": dict(activation=Swish),
                              "ELU": dict(activation=lambda: ll.ELU(alpha=1.0))},
              metrics=[Metric("error", "test error (%)", ".2f", better="lower"),
                       Metric("time_s", "training time (s)", ".2f", better="lower")],
              repeats=5)

if __name__ == "__main__":
    result = study.run(out="my-study-results",
                       command="python examples/my_study.py")
    print(result.table())
    print("Report: my-study-results/report.md")
