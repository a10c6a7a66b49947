"""The encoder and decoder networks of the reference model (provided; do not edit).

Encoder: 784 -> 300 -> 300 -> 2z (ELU), split into mean and variance.
Decoder: z -> 300 -> 300 -> 784 (ELU), logits of 784 Bernoullis.
"""
from torch import nn

import utils as ut

IMAGE_DIM = 784
HIDDEN_DIM = 300


class Encoder(nn.Module):
    def __init__(self, z_dim):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(IMAGE_DIM, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, 2 * z_dim),
        )

    def forward(self, x):
        """x (batch, 784) -> m, v, each (batch, z)."""
        return ut.gaussian_parameters(self.net(x), dim=-1)


class Decoder(nn.Module):
    def __init__(self, z_dim):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, IMAGE_DIM),
        )

    def forward(self, z):
        """z (batch, z) -> logits (batch, 784)."""
        return self.net(z)
