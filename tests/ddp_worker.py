"""Run by tests/test_distributed.py under torchrun (2 CPU processes) or
alone (1 process): trains a small network with fixed data and seed and
writes its final weights (rank 0 only) to the path given."""

import sys

import numpy as np
import torch
from safetensors.torch import save_file

import layerlab as ll


def main(out_path: str, environment: str) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 6)).astype(np.float32)
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)

    class Features(ll.InputLayer):
        def __init__(self, input_size):
            super().__init__()
            self.input_size = tuple(input_size)

        def predict(self, X):
            return X

    # a torch.nn module among the layers: DDP trains ModuleLayer's parameters too
    layers = [Features((6,)), ll.FullyConnected(16), ll.ELU(16), torch.nn.Linear(16, 16),
              ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    opts = ll.training_options("sgdm", max_epochs=3, mini_batch_size=32, seed=0,
                               execution_environment=environment, verbose=False,
                               shuffle="every-epoch")
    net, info = ll.train_network(X, Y, layers, opts)
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
