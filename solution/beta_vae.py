"""The VAE with a weight on its KL term (beta-VAE). Students implement `negative_elbo_bound`."""
import torch
from torch import nn

import nns
import utils as ut


class BetaVAE(nn.Module):
    def __init__(self, z_dim=10, name="beta_vae"):
        super().__init__()
        self.name = name
        self.z_dim = z_dim
        self.enc = nns.Encoder(z_dim)
        self.dec = nns.Decoder(z_dim)
        # Prior p(z) = N(0, I); parameters so that .to(device) moves them, never trained.
        self.z_prior_m = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.z_prior_v = nn.Parameter(torch.ones(1), requires_grad=False)

    def negative_elbo_bound(self, x, beta=1.0):
        """The training loss rec + beta * kl and its two terms, each a batch mean.

        Args:
            x: tensor (batch, 784): binarized images
            beta: float >= 0, the weight of the KL term (default 1: the loss is the negative ELBO)

        Returns:
            loss: scalar tensor, = rec + beta * kl
            kl: scalar tensor, mean over the batch of KL(q(z|x) || p(z)), not weighted
            rec: scalar tensor, mean over the batch of -log p(x|z), z drawn from q(z|x)
                 with one reparameterized sample, not weighted

        Hint: the weight multiplies the KL term of the loss and nothing else. Use self.enc,
        self.dec, self.z_prior_m, self.z_prior_v and the helpers ut.sample_gaussian,
        ut.kl_normal and ut.log_bernoulli_with_logits.
        """
        # BEGIN SOLUTION
        m, v = self.enc(x)                                            # (batch, z) each
        kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)       # (batch,)
        z = ut.sample_gaussian(m, v)                                  # (batch, z)
        rec = -ut.log_bernoulli_with_logits(x, self.dec(z))           # (batch,)
        loss = rec + beta * kl                                        # (batch,); beta = 1: kl + rec
        loss, kl, rec = loss.mean(), kl.mean(), rec.mean()
        # END SOLUTION
        return loss, kl, rec

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


class KLWeighted(nn.Module):
    """The model as the provided training loop sees it (provided).

    train.py calls `model.negative_elbo_bound(x)` and takes one Adam step on the first value it
    returns; `KLWeighted(model, beta)` answers that call with `model.negative_elbo_bound(x, beta=beta)`,
    so the same loop trains on rec + beta * kl. Its parameters are the model's (run_beta_vae.py
    trains `KLWeighted(model, args.beta)` and saves `model`)."""

    def __init__(self, model, beta=1.0):
        super().__init__()
        self.model = model
        self.beta = float(beta)

    def negative_elbo_bound(self, x):
        return self.model.negative_elbo_bound(x, beta=self.beta)
