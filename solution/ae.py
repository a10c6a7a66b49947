"""The linear autoencoder (a computer-vision course's ask): 784 -> k -> 784 with no non-linearity,
trained on MNIST's grey levels scaled to [0, 1] with the mean squared reconstruction error.

Its best solution is known in closed form: the decoder's columns span the top-k principal subspace
of the centred training images, and its reconstruction error is PCA's at the same k (the grader
computes PCA itself and compares)."""
import torch
from torch import nn

PIXELS = 784


class LinearAutoencoder(nn.Module):
    """x (batch, 784) -> code z = W_e x + b_e (batch, k) -> reconstruction W_d z + b_d (batch, 784).

    Two affine maps, each with its weight and its bias, trained separately (not tied) and with no
    non-linearity anywhere: encode and decode must both be affine functions of their input.
    Initialise the weights at random (nn.Linear's default initialisation is right; weights of zeros
    never train: every gradient of a weight is then zero, and the grader trains your class as it is)."""

    def __init__(self, k, pixels=PIXELS):
        super().__init__()
        self.k, self.pixels = k, pixels
        # BEGIN SOLUTION
        self.encoder = nn.Linear(pixels, k)
        self.decoder = nn.Linear(k, pixels)
        # END SOLUTION

    def encode(self, x):
        """Images (batch, 784) in [0, 1] -> codes (batch, k)."""
        # BEGIN SOLUTION
        return self.encoder(x)
        # END SOLUTION

    def decode(self, z):
        """Codes (batch, k) -> reconstructions (batch, 784), not clipped or squashed."""
        # BEGIN SOLUTION
        return self.decoder(z)
        # END SOLUTION

    def forward(self, x):
        return self.decode(self.encode(x))


def reconstruction_loss(x, x_hat):
    """The batch mean of (1/784) sum_i (x_i - x_hat_i)^2: the mean squared error per pixel.

    x, x_hat: (batch, 784) -> a scalar tensor (0-dimensional) that gradients flow through."""
    # BEGIN SOLUTION
    return ((x - x_hat) ** 2).sum(dim=-1).div(x.shape[-1]).mean()
    # END SOLUTION


class NonlinearAutoencoder(nn.Module):
    """The optional non-linear variant (not graded): a ReLU code and a sigmoid output, trained
    with the binary cross-entropy between the grey levels and the output (run_ae.py --nonlinear)."""

    def __init__(self, k, pixels=PIXELS, hidden=512):
        super().__init__()
        self.k, self.pixels = k, pixels
        self.down = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, k), nn.ReLU())
        self.up = nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def encode(self, x):
        return self.down(x)

    def decode(self, z):
        return torch.sigmoid(self.up(z))

    def forward(self, x):
        return self.decode(self.encode(x))



def cross_entropy_loss(x, x_hat):
    """The non-linear variant's loss: cross-entropy of the grey levels x against the output x_hat in (0, 1),
    (1/784) sum over pixels, batch mean."""
    return nn.functional.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x)
