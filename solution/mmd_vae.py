"""The MMD-VAE (InfoVAE, Zhao et al. 2019): the KL term replaced by a maximum mean discrepancy between
the encoded codes and draws from the prior. Students implement `mmd` and `MMDVAE.loss`."""
import torch
from torch import nn

import nns
import utils as ut

LAMBDA = 1000.0     # the weight of the MMD term (InfoVAE's choice for MNIST)


def mmd(x, y, biased=True):
    """The squared maximum mean discrepancy between the samples x and y, Gaussian kernel.

    Kernel: k(a, b) = exp(-|a - b|^2 / (2 h^2)) with the bandwidth h^2 = dim / 2, that is
    k(a, b) = exp(-|a - b|^2 / dim), dim = the number of columns (InfoVAE's choice).

    Args:
        x: tensor (n, dim): n samples (rows)
        y: tensor (m, dim): m samples (rows), same dim, n and m >= 2
        biased: True: the biased estimator (a V-statistic: the means over every pair, the
            diagonals k(x_i, x_i) = k(y_j, y_j) = 1 included), zero when x and y are the same
            samples; False: the unbiased estimator (a U-statistic: the diagonals of the xx and yy
            terms left out, means over i != j), whose expectation is zero when x and y are
            drawn from one distribution (it can be negative).

    Returns:
        scalar tensor: mean k(x, x') + mean k(y, y') - 2 mean k(x, y), in x's dtype,
        differentiable with respect to x and y

    Hint: the three kernel matrices from the squared distances between rows (torch.cdist, or
    broadcasting x[:, None, :] - y[None, :, :]).
    """
    # BEGIN SOLUTION
    dim = x.shape[1]

    def kernel(a, b):
        return torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / dim)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    if biased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    n, m = x.shape[0], y.shape[0]
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return xx + yy - 2 * kxy.mean()
    # END SOLUTION


class MMDVAE(nn.Module):
    def __init__(self, z_dim=10, name="mmd_vae", lam=LAMBDA):
        super().__init__()
        self.name = name
        self.z_dim = z_dim
        self.lam = lam
        self.enc = nns.Encoder(z_dim)
        self.dec = nns.Decoder(z_dim)
        # Prior p(z) = N(0, I); parameters so that .to(device) moves them, never trained.
        self.z_prior_m = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.z_prior_v = nn.Parameter(torch.ones(1), requires_grad=False)

    def encode(self, x):
        """The codes of x: the encoder's mean (its variance is not used) -> (batch, z)."""
        m, _ = self.enc(x)
        return m

    def loss(self, x):
        """The MMD-VAE's training loss and its two terms.

        Args:
            x: tensor (batch, 784): binarized images

        Returns:
            loss: scalar tensor, = rec + self.lam * mmd
            mmd: scalar tensor, mmd(z, z_prior) in its biased form (the default), between the
                 codes z = self.encode(x) (the encoder's mean, one per image) and `batch` fresh
                 draws z_prior from the prior N(0, I) (self.sample_z(batch)), not weighted
            rec: scalar tensor, mean over the batch of -log p(x|z) at the codes z, not weighted

        Hint: call the module function mmd (not a copy of it); use self.encode, self.dec,
        self.sample_z and ut.log_bernoulli_with_logits.
        """
        # BEGIN SOLUTION
        z = self.encode(x)                                            # (batch, z)
        z_prior = self.sample_z(x.shape[0])                           # (batch, z)
        divergence = mmd(z, z_prior)
        rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).mean()
        loss = rec + self.lam * divergence
        # END SOLUTION
        return loss, divergence, rec

    def sample_z(self, batch):
        """batch draws from the prior -> (batch, z)."""
        m = self.z_prior_m.expand(batch, self.z_dim)
        v = self.z_prior_v.expand(batch, self.z_dim)
        return m + torch.sqrt(v) * torch.randn_like(m)

    def compute_sigmoid_given(self, z):
        """Pixel probabilities of p(x | z) -> (batch, 784)."""
        return torch.sigmoid(self.dec(z))

    def sample_sigmoid(self, batch):
        """Pixel probabilities for `batch` prior draws (the usual way to show samples)."""
        return self.compute_sigmoid_given(self.sample_z(batch))


class LossAsBound(nn.Module):
    """The model as the provided training loop sees it (provided).

    train.py calls `model.negative_elbo_bound(x)` and takes one Adam step on the first value it
    returns; `LossAsBound(model)` answers that call with `model.loss(x)`, so the same loop trains
    the MMD-VAE. Its parameters are the model's (run_mmd_vae.py trains `LossAsBound(model)` and
    saves `model`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def negative_elbo_bound(self, x):
        return self.model.loss(x)
