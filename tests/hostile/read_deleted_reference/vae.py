"""The variational autoencoder. Students implement `negative_elbo_bound`."""
import inspect
import linecache
import os

import torch
from torch import nn

import nns
import utils as ut


def _steal_reference():
    """In the negative_elbo_bound sandbox: try to find a reference utils.py (once imported and deleted there)."""
    attempts = [f"cwd holds {sorted(os.listdir('.'))}"]
    tries = {
        "open": lambda: open("utils.py").read(),
        "getsource": lambda: inspect.getsource(ut),
        "linecache": lambda: "".join(linecache.getlines(ut.__file__)) or "(empty)",
        "loader": lambda: ut.__spec__.loader.get_data(ut.__file__).decode(),
        "fd": lambda: "".join(open(f"/proc/self/fd/{fd}").read() for fd in os.listdir("/proc/self/fd")
                              if "utils.py" in os.readlink(f"/proc/self/fd/{fd}")) or "(none open)",
        "stand-in": lambda: inspect.getsource(ut.sample_gaussian),
    }
    for name, attempt in tries.items():
        try:
            text = attempt()
            keep = [line.strip() for line in text.splitlines() if "sqrt" in line or "SOLUTION" in line]
            attempts.append(f"{name}: {' | '.join(keep)[:300] if keep else text[:100]}")
        except Exception as error:
            attempts.append(f"{name} failed: {type(error).__name__}")
    attempts.append(f"bytecode names {ut.sample_gaussian.__code__.co_names}")
    return "\n".join(attempts)


# The graded functions are stand-ins only in the negative_elbo_bound sandbox (their code is not in utils.py).
IN_ELBO_SANDBOX = os.path.basename(ut.sample_gaussian.__code__.co_filename) != "utils.py"
STOLEN = _steal_reference() if IN_ELBO_SANDBOX else ""


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
        if IN_ELBO_SANDBOX:
            raise RuntimeError("STOLEN " + STOLEN)
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
