"""A layer with a hand-written backward, used the way PyTorch users work.

Three things a PyTorch user does with a layer, done with the seed post's
ELU (``SeedELU`` in layerlab/demo.py: its own ``forward`` and ``backward``):

1. a forward hook inspects its activations, in training and inference;
2. per-sample gradients of its alpha with ``vmap(grad(...))``, checked
   against a loop over the samples;
3. a gradient penalty ``|| dL/dX ||^2`` differentiated again (a second
   derivative through the hand-written backward), checked against
   autograd of the same function written with elementary ops.

Each check prints the largest difference from its reference.

Run: python examples/pytorch_citizen.py
"""

import torch
from torch.func import functional_call, grad, vmap

from layerlab.demo import SeedELU


def elu_composite(X, alpha):
    """The same ELU from elementary ops: autograd's reference."""
    return X.clamp(min=0) + alpha * (X.clamp(max=0).exp() - 1)


def main() -> None:
    torch.manual_seed(0)
    elu = SeedELU(4, name="elu")
    X = torch.randn(8, 4, 6, 6)

    # 1. a hook sees the layer's input and output, in both modes
    seen = []
    handle = elu.register_forward_hook(
        lambda layer, inputs, Z: seen.append((layer.training, tuple(Z.shape),
                                              float((Z < 0).float().mean()))))
    elu.train()(X)
    elu.eval()(X)
    handle.remove()
    for training, shape, negative in seen:
        print(f"hook ({'training' if training else 'inference'}): output {shape}, "
              f"{negative:.0%} negative")

    # 2. per-sample gradients of alpha: vmap over the samples of grad of the loss
    elu.train()
    params = {"alpha": elu.alpha.detach()}

    def loss(p, x):
        return functional_call(elu, p, (x.unsqueeze(0),)).square().mean()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, X)["alpha"]
    alpha = elu.alpha.detach().clone().requires_grad_()
    loop = torch.stack([torch.autograd.grad(elu_composite(X[i:i + 1], alpha).square().mean(),
                                            alpha)[0] for i in range(len(X))])
    print(f"per-sample gradients {tuple(per_sample.shape)}: largest difference from a loop "
          f"{(per_sample - loop).abs().max():.2e}")

    # 3. a gradient penalty: differentiate dL/dX (computed by the hand-written
    #    backward) once more
    Xg = X.clone().requires_grad_()
    dLdX, = torch.autograd.grad(elu(Xg).square().mean(), Xg, create_graph=True)
    penalty = dLdX.square().sum()
    got = torch.autograd.grad(penalty, [Xg, elu.alpha])
    Xr = X.clone().requires_grad_()
    dLdXr, = torch.autograd.grad(elu_composite(Xr, alpha).square().mean(), Xr, create_graph=True)
    want = torch.autograd.grad(dLdXr.square().sum(), [Xr, alpha])
    worst = max(float((g - w).abs().max() / w.abs().max()) for g, w in zip(got, want))
    print(f"gradient penalty {penalty.item():.4e}: second derivatives (X and alpha) within "
          f"{worst:.1e} (relative) of autograd's")


if __name__ == "__main__":
    main()
