"""The VAE whose encoder outputs a log-variance (provided; you implement logvar_utils.py).

The CS236 VAE's networks (nns.py), with the encoder's second half read as s = log(sigma^2) instead of
a softplus variance: q(z|x) = N(m, diag(exp(s))). The bound uses your `sample_gaussian_logvar` and
`kl_normal_logvar`; the prior is N(0, I), i.e. mean 0 and log-variance 0.
"""
import torch
from torch import nn

import logvar_utils as lu
import nns
import utils as ut


class LogVarEncoder(nns.Encoder):
    """nns.Encoder's layers (the same parameter names), returning (m, s) with s the log-variance."""

    def forward(self, x):
        """x (batch, 784) -> m, s, each (batch, z)."""
        m, s = torch.chunk(self.net(x), 2, dim=-1)
        return m, s


class LogVarVAE(nn.Module):
    def __init__(self, z_dim=10, name="logvar_vae"):
        super().__init__()
        self.name = name
        self.z_dim = z_dim
        self.enc = LogVarEncoder(z_dim)
        self.dec = nns.Decoder(z_dim)
        # Prior p(z) = N(0, I): mean 0, log-variance 0; parameters so that .to(device) moves them.
        self.z_prior_m = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.z_prior_s = nn.Parameter(torch.zeros(1), requires_grad=False)

    def negative_elbo_bound(self, x):
        """nelbo = kl + rec and its two terms, batch means; z is one reparameterized draw from q(z|x)."""
        m, s = self.enc(x)
        kl = lu.kl_normal_logvar(m, s, self.z_prior_m, self.z_prior_s)
        z = lu.sample_gaussian_logvar(m, s)
        rec = -ut.log_bernoulli_with_logits(x, self.dec(z))
        nelbo = kl + rec
        return nelbo.mean(), kl.mean(), rec.mean()

    def negative_iwae_bound(self, x, iw):
        """The negative IWAE bound with `iw` importance samples, and the ELBO's kl and rec (batch means)."""
        m, s = self.enc(x)
        m_iw, s_iw, x_iw = ut.duplicate(m, iw), ut.duplicate(s, iw), ut.duplicate(x, iw)
        z = lu.sample_gaussian_logvar(m_iw, s_iw)
        log_px_given_z = ut.log_bernoulli_with_logits(x_iw, self.dec(z))
        log_pz = ut.log_normal(z, self.z_prior_m.expand_as(z), self.z_prior_s.exp().expand_as(z))
        log_qz = ut.log_normal(z, m_iw, s_iw.exp())
        log_w = (log_px_given_z + log_pz - log_qz).reshape(iw, -1)
        niwae = -ut.log_mean_exp(log_w, dim=0).mean()
        kl = lu.kl_normal_logvar(m, s, self.z_prior_m, self.z_prior_s).mean()
        rec = -log_px_given_z.reshape(iw, -1).mean()
        return niwae, kl, rec

    def sample_z(self, batch):
        """batch draws from the prior -> (batch, z)."""
        return torch.randn(batch, self.z_dim, dtype=self.z_prior_m.dtype, device=self.z_prior_m.device)

    def compute_sigmoid_given(self, z):
        """Pixel probabilities of p(x | z) -> (batch, 784)."""
        return torch.sigmoid(self.dec(z))

    def sample_sigmoid(self, batch):
        return self.compute_sigmoid_given(self.sample_z(batch))

    def sample_x(self, batch):
        return torch.bernoulli(self.sample_sigmoid(batch))
