"""The encoder and decoder networks of the conditional VAE (provided; do not edit).

The networks of nns.py, each also given the digit's label as a one-hot vector of 10, which it
concatenates to its input (so that the CVAE and the VAE differ only by the label):
Encoder q(z|x,y): (784 + 10) -> 300 -> 300 -> 2z (ELU), split into mean and variance.
Decoder p(x|z,y): (z + 10) -> 300 -> 300 -> 784 (ELU), logits of 784 Bernoullis.
"""
import torch
from torch import nn

import utils as ut

IMAGE_DIM = 784
HIDDEN_DIM = 300
CLASSES = 10


class Encoder(nn.Module):
    def __init__(self, z_dim, y_dim=CLASSES):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(IMAGE_DIM + y_dim, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, 2 * z_dim),
        )

    def forward(self, x, y):
        """x (batch, 784), y (batch, 10) one-hot -> m, v, each (batch, z)."""
        return ut.gaussian_parameters(self.net(torch.cat([x, y], dim=-1)), dim=-1)


class Decoder(nn.Module):
    def __init__(self, z_dim, y_dim=CLASSES):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim + y_dim, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ELU(),
            nn.Linear(HIDDEN_DIM, IMAGE_DIM),
        )

    def forward(self, z, y):
        """z (batch, z), y (batch, 10) one-hot -> logits (batch, 784)."""
        return self.net(torch.cat([z, y], dim=-1))
