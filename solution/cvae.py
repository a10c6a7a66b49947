"""The conditional variational autoencoder. Students implement `negative_elbo_bound`."""
import torch
from torch import nn

import cvae_nns
import utils as ut


class CVAE(nn.Module):
    def __init__(self, z_dim=10, y_dim=cvae_nns.CLASSES, name="cvae"):
        super().__init__()
        self.name = name
        self.z_dim = z_dim
        self.y_dim = y_dim
        self.enc = cvae_nns.Encoder(z_dim, y_dim)
        self.dec = cvae_nns.Decoder(z_dim, y_dim)
        # Prior p(z) = N(0, I), the same for every label; parameters so that .to(device) moves them.
        self.z_prior_m = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.z_prior_v = nn.Parameter(torch.ones(1), requires_grad=False)

    def negative_elbo_bound(self, x, y):
        """The negative conditional evidence lower bound and its two terms, each a batch mean.

        Args:
            x: tensor (batch, 784): binarized images
            y: tensor (batch, 10): their labels, one-hot

        Returns:
            nelbo: scalar tensor, = kl + rec
            kl: scalar tensor, mean over the batch of KL(q(z|x,y) || p(z))
            rec: scalar tensor, mean over the batch of -log p(x|z,y), z drawn from q(z|x,y)
                 with one reparameterized sample

        Hint: the label goes to both networks: m, v = self.enc(x, y) and logits = self.dec(z, y).
        Use self.z_prior_m, self.z_prior_v and the helpers ut.sample_gaussian, ut.kl_normal and
        ut.log_bernoulli_with_logits.
        """
        # BEGIN SOLUTION
        m, v = self.enc(x, y)                                         # (batch, z) each
        kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)       # (batch,)
        z = ut.sample_gaussian(m, v)                                  # (batch, z)
        rec = -ut.log_bernoulli_with_logits(x, self.dec(z, y))        # (batch,)
        nelbo = kl + rec
        nelbo, kl, rec = nelbo.mean(), kl.mean(), rec.mean()
        # END SOLUTION
        return nelbo, kl, rec

    def negative_iwae_bound(self, x, y, iw):
        """The negative IWAE bound of log p(x|y) with `iw` importance samples, batch means.

        Returns niwae, kl, rec; kl and rec are the ELBO's terms, for reference.
        """
        m, v = self.enc(x, y)                                         # (batch, z)
        m_iw, v_iw = ut.duplicate(m, iw), ut.duplicate(v, iw)
        x_iw, y_iw = ut.duplicate(x, iw), ut.duplicate(y, iw)
        z = ut.sample_gaussian(m_iw, v_iw)                            # (iw * batch, z)
        log_px_given_z = ut.log_bernoulli_with_logits(x_iw, self.dec(z, y_iw))
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

    def sample_sigmoid(self, y):
        """Pixel probabilities of p(x|z,y) for one prior draw of z per row of y (batch, 10) -> (batch, 784)."""
        return torch.sigmoid(self.dec(self.sample_z(len(y)), y))
