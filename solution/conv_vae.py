"""The convolutional VAE with a Monte Carlo bound (the TensorFlow tutorial's CVAE, in PyTorch).

A convolutional encoder (provided) maps a 28 x 28 image to the mean and the log-variance of
q(z|x); a transposed-convolution decoder (yours) maps a code back to 28 x 28 Bernoulli logits.
The bound is the one-sample Monte Carlo estimate of the ELBO,
    log p(x|z) + log p(z) - log q(z|x),   z ~ q(z|x) drawn once per image,
whose expectation over z is the ELBO. Students implement `log_normal_pdf`, `ConvDecoder`
(`__init__` and `forward`) and `ConvVAE.negative_elbo_bound`.

Shapes: images arrive flat, (batch, 784) of 0/1, as train.py's loop draws them; the networks
see them as (batch, 1, 28, 28).
"""
import math

import torch
from torch import nn

import utils as ut

IMAGE_SHAPE = (1, 28, 28)
CHANNELS = (16, 32)          # the feature maps at 14 x 14 and at 7 x 7


def log_normal_pdf(sample, mean, logvar):
    """log N(sample; mean, diag(exp(logvar))), summed over the last dimension.

    Args:
        sample: tensor (..., dim): the points
        mean: tensor broadcastable to sample's shape: the means
        logvar: tensor broadcastable to sample's shape: the log-variances s = log sigma^2
            (not the variances, not the standard deviations)

    Returns:
        tensor of the broadcast shape without its last dimension (e.g. (batch,) for (batch, dim)
        inputs): sum over the last dimension of
            -1/2 * ((sample - mean)^2 * exp(-logvar) + logvar + log(2 pi)),
        differentiable with respect to all three inputs.

    Hint: use exp(-logvar) rather than 1 / exp(logvar) (it stays finite for large log-variances).
    """
    # BEGIN SOLUTION
    return -0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    # END SOLUTION


class ConvEncoder(nn.Module):
    """x (batch, 784) -> mean, logvar of q(z|x), each (batch, z) (provided).

    conv1: Conv2d(1, 16, kernel 4, stride 2, padding 1): 28 x 28 -> 14 x 14, ReLU
    conv2: Conv2d(16, 32, kernel 4, stride 2, padding 1): 14 x 14 -> 7 x 7, ReLU
    fc: Linear(32 * 7 * 7, 2z), split into the mean and the log-variance
    """

    def __init__(self, z_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(IMAGE_SHAPE[0], CHANNELS[0], kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(CHANNELS[0], CHANNELS[1], kernel_size=4, stride=2, padding=1)
        self.fc = nn.Linear(CHANNELS[1] * 7 * 7, 2 * z_dim)

    def forward(self, x):
        h = x.reshape(-1, *IMAGE_SHAPE)
        h = torch.relu(self.conv2(torch.relu(self.conv1(h))))
        mean, logvar = torch.chunk(self.fc(h.flatten(1)), 2, dim=-1)
        return mean, logvar


class ConvDecoder(nn.Module):
    """z (batch, z) -> logits (batch, 1, 28, 28) of p(x|z): the encoder mirrored.

    Build exactly these layers, under these attribute names (the grader loads trained weights by
    name and checks their shapes):
        fc: nn.Linear(z_dim, 32 * 7 * 7), then ReLU, then reshape to (batch, 32, 7, 7)
        deconv1: nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1): 7 x 7 -> 14 x 14, then ReLU
        deconv2: nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1): 14 x 14 -> 28 x 28
    and no activation after deconv2: the outputs are logits (the bound's Bernoulli takes logits).

    A transposed convolution with kernel k, stride s and padding p maps a side of n pixels to
    (n - 1) s - 2p + k: here (7 - 1) 2 - 2 + 4 = 14 and (14 - 1) 2 - 2 + 4 = 28.
    """

    def __init__(self, z_dim):
        super().__init__()
        self.z_dim = z_dim
        # BEGIN SOLUTION
        self.fc = nn.Linear(z_dim, CHANNELS[1] * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(CHANNELS[1], CHANNELS[0], kernel_size=4, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(CHANNELS[0], IMAGE_SHAPE[0], kernel_size=4, stride=2, padding=1)
        # END SOLUTION

    def forward(self, z):
        """z (batch, z) -> logits (batch, 1, 28, 28)."""
        # BEGIN SOLUTION
        h = torch.relu(self.fc(z)).reshape(-1, CHANNELS[1], 7, 7)
        h = torch.relu(self.deconv1(h))
        return self.deconv2(h)
        # END SOLUTION


class ConvVAE(nn.Module):
    def __init__(self, z_dim=10, name="conv_vae"):
        super().__init__()
        self.name = name
        self.z_dim = z_dim
        self.enc = ConvEncoder(z_dim)
        self.dec = ConvDecoder(z_dim)

    def reparameterize(self, mean, logvar):
        """One draw z ~ N(mean, diag(exp(logvar))) per row, differentiable in mean and logvar (provided)."""
        eps = torch.randn_like(mean)
        return mean + torch.exp(0.5 * logvar) * eps

    def negative_elbo_bound(self, x):
        """The one-sample Monte Carlo estimate of the negative ELBO, and its two terms.

        Args:
            x: tensor (batch, 784): binarized images

        Returns:
            nelbo: scalar tensor, = kl + rec: the batch mean of -(log p(x|z) + log p(z) - log q(z|x))
            kl: scalar tensor, the batch mean of log q(z|x) - log p(z) at the drawn z (the Monte
                Carlo estimate of the KL, not its closed form)
            rec: scalar tensor, the batch mean of -log p(x|z)

        where, for each image, z is ONE draw from q(z|x) = N(mean, diag(exp(logvar))) with
        (mean, logvar) = self.enc(x), p(z) = N(0, I) and p(x|z) the Bernoulli with logits
        self.dec(z) (shape (batch, 1, 28, 28): flatten it to (batch, 784) like x).

        Hint: use self.enc, self.reparameterize, self.dec, log_normal_pdf (twice: the prior has
        mean 0 and log-variance 0) and ut.log_bernoulli_with_logits.
        """
        # BEGIN SOLUTION
        mean, logvar = self.enc(x)
        z = self.reparameterize(mean, logvar)
        logits = self.dec(z).reshape(x.shape[0], -1)
        log_px_z = ut.log_bernoulli_with_logits(x, logits)
        log_pz = log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz_x = log_normal_pdf(z, mean, logvar)
        kl = (log_qz_x - log_pz).mean()
        rec = -log_px_z.mean()
        nelbo = kl + rec
        # END SOLUTION
        return nelbo, kl, rec

    def sample_z(self, batch):
        """batch draws from the prior N(0, I) -> (batch, z)."""
        return torch.randn(batch, self.z_dim, device=self.enc.fc.weight.device)

    def compute_sigmoid_given(self, z):
        """Pixel probabilities of p(x|z) -> (batch, 784)."""
        return torch.sigmoid(self.dec(z).reshape(z.shape[0], -1))

    def sample_sigmoid(self, batch):
        """Pixel probabilities for `batch` prior draws (the usual way to show samples) -> (batch, 784)."""
        return self.compute_sigmoid_given(self.sample_z(batch))
