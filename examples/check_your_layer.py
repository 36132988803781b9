"""Check your layer before it trains: the seed post's ELU, as first
published and as corrected.

The post's backward first shipped with a typo,

    dLdAlpha = exp(min(X,0) - 1) .* dLdZ      % should be (exp(min(X,0)) - 1) .* dLdZ

which trains without any error message, just worse. ``layerlab.check_layer``
(MATLAB's ``checkLayer``) compares the hand-written derivatives with finite
differences and says which derivative is wrong, where, and by how much.

Run: python examples/check_your_layer.py
(on the command line: layerlab check examples/check_your_layer.py:TypoELU
--input-size 20 24 24 --args '[20]')
"""

import torch

import layerlab as ll
from layerlab.demo import SeedELU          # the corrected layer, as in the post


class TypoELU(SeedELU):
    """The seed post's ELU with its backward as first published."""

    def backward(self, X, Z, dLdZ, memory):
        dLdX = dLdZ * torch.where(X > 0, 1.0, self.alpha + Z)
        dLdAlpha = torch.exp(X.clamp(max=0) - 1) * dLdZ       # the typo
        dLdAlpha = dLdAlpha.sum(dim=(0, 2, 3)).view(-1, 1, 1)   # over N, H, W
        return dLdX, dLdAlpha


def main() -> None:
    torch.manual_seed(0)
    # input size of one observation: the ELU follows a 5x5 convolution with
    # 20 filters on 28x28 digits, so (20, 24, 24) as in MATLAB's example
    print("The ELU as first published:\n")
    typo = ll.check_layer(TypoELU(20), (20, 24, 24))
    print("\nThe corrected ELU:\n")
    fixed = ll.check_layer(SeedELU(20), (20, 24, 24))
    print(f"\ntypo'd layer passed: {typo.passed}; corrected layer passed: {fixed.passed}")


if __name__ == "__main__":
    main()
