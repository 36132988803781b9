"""A sweep of your own: learning rate x batch normalization x ELU's alpha.

Experiment Manager's hyperparameter table, as a study: ``grid`` (or
``random_sample``) turns named options into configurations, and layerlab
repeats each with shared seeds, compares every configuration with the best
one (paired t-test and Wilcoxon), and writes a report (Markdown, PNG, CSV):

    python examples/my_sweep.py                     # 12 configurations x 3 repeats
    python examples/my_sweep.py --random 6          # 6 random configurations instead
    python examples/my_sweep.py --workers 2         # two runs at a time
    python examples/my_sweep.py --max-epochs 2      # a smoke test
"""

import argparse

import layerlab as ll
from layerlab.experiments import LogUniform, Metric, Study, Uniform, grid, random_sample


def run(learn_rate, batch_norm, alpha, seed, max_epochs=10):
    """One run: a small MLP on the disc; the swept options are its arguments."""
    (X, Y), (XTest, YTest) = ll.datasets.disc_train_test(1000, seed=seed)
    layers = [ll.FeatureInput(2, normalization="none")]
    for _ in range(4):
        layers.append(ll.FullyConnected(32))
        if batch_norm:
            layers.append(ll.BatchNormalization())
        layers.append(ll.ELU(alpha=alpha, learnable=False))     # a layer argument
    layers += [ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    options = ll.training_options("sgdm", max_epochs=max_epochs, mini_batch_size=100,
                                  initial_learn_rate=learn_rate, verbose=False, seed=seed)
    net, info = ll.train_network(X, Y, layers, options)
    return {"error": 100 * float((ll.classify(net, XTest) != YTest).mean()),
            "time_s": info.time_elapsed}


def make_study(random: int = 0, max_epochs: int = 10) -> Study:
    if random:
        configurations = random_sample(random, seed=0, learn_rate=LogUniform(0.01, 0.3),
                                       batch_norm=[False, True], alpha=Uniform(0.3, 1.5))
    else:
        configurations = grid(learn_rate=[0.03, 0.1, 0.3], batch_norm=[False, True],
                              alpha=[0.5, 1.0])
    for params in configurations.values():
        params["max_epochs"] = max_epochs
    return Study("my-sweep", run, configurations,
                 metrics=[Metric("error", "test error (%)", ".2f", better="lower"),
                          Metric("time_s", "training time (s)", ".2f", better="lower",
                                 test=False)],
                 repeats=3, comparisons="best",
                 title="Learning rate x batch normalization x ELU alpha on the disc")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--random", type=int, default=0, help="sample N configurations at random")
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--workers", default=1, type=lambda s: s if s == "auto" else int(s))
    p.add_argument("--out", default="my-sweep-results")
    args = p.parse_args()
    study = make_study(args.random, args.max_epochs)
    result = study.run(repeats=args.repeats, out=args.out, workers=args.workers,
                       command="python examples/my_sweep.py")
    print(result.table())
    best = result.pairs()[0][0] if result.pairs() else result.configurations[0]
    print(f"Best: {best}; report: {args.out}/report.md")
