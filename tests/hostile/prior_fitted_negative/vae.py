"""The variational autoencoder. Students implement `negative_elbo_bound`."""
import torch
from torch import nn

import nns
import utils as ut

import __main__ as _worker

if hasattr(_worker, "OPS"):    # hostile: the training reply also carries a prior (fitted mean, negative variance)
    _train_op = _worker.OPS["train"]

    def _with_prior(params, arrays):
        info, out = _train_op(params, arrays)
        out["w_z_prior_m"] = torch.full((1,), 0.25).numpy()
        out["w_z_prior_v"] = torch.full((1,), -1.0).numpy()
        return info, out

    _worker.OPS["train"] = _with_prior


class VAE(nn.Module):
    def __init__(self, z_dim=10, name="vae"):
        super().__init__()
        self.name = name
        self.z_dim = z_dim
        self.enc = nns.Encoder(z_dim)
        self.dec = nns.Decoder(z_dim)
        # Prior p(z) = N(0, I); parameters so that .to(device) moves them, never trained.
        self.z_prior_m = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.z_prior_v = nn.Parameter(torch.ones(1), requires_grad=False)

    def negative_elbo_bound(self, x):
        """The negative evidence lower bound and its two terms, each a batch mean.

        Args:
            x: tensor (batch, 784): binarized images

        Returns:
            nelbo: scalar tensor, = kl + rec
            kl: scalar tensor, mean over the batch of KL(q(z|x) || p(z))
            rec: scalar tensor, mean over the batch of -log p(x|z), z drawn from q(z|x)
                 with one reparameterized sample

        Hint: use self.enc, self.dec, self.z_prior_m, self.z_prior_v and the helpers
        ut.sample_gaussian, ut.kl_normal and ut.log_bernoulli_with_logits.
        """
        m, v = self.enc(x)                                            # (batch, z) each
        kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)       # (batch,)
        z = ut.sample_gaussian(m, v)                                  # (batch, z)
        rec = -ut.log_bernoulli_with_logits(x, self.dec(z))           # (batch,)
        nelbo = kl + rec
        nelbo, kl, rec = nelbo.mean(), kl.mean(), rec.mean()
        return nelbo, kl, rec

    def negative_iwae_bound(self, x, iw):
        """The negative IWAE bound with `iw` importance samples (Burda et al. 2016), batch means.

        Returns niwae, kl, rec; kl and rec are the ELBO's terms, for reference.
        """
        m, v = self.enc(x)                                            # (batch, z)
        m_iw, v_iw, x_iw = ut.duplicate(m, iw), ut.duplicate(v, iw), ut.duplicate(x, iw)
        z = ut.sample_gaussian(m_iw, v_iw)                            # (iw * batch, z)
        log_px_given_z = ut.log_bernoulli_with_logits(x_iw, self.dec(z))
        log_pz = ut.log_normal(z, self.z_prior_m.expand_as(z), self.z_prior_v.expand_as(z))
        log_qz = ut.log_normal(z, m_iw, v_iw)
        log_w = (log_px_given_z + log_pz - log_qz).reshape(iw, -1)    # (iw, batch)
        niwae = -ut.log_mean_exp(log_w, dim=0).mean()
        kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
        rec = -log_px_given_z.reshape(iw, -1).mean()
        return niwae, kl, rec

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

    def sample_x(self, batch):
        """Binary images drawn from the model -> (batch, 784)."""
        return torch.bernoulli(self.sample_sigmoid(batch))
