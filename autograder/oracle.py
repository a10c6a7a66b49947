"""TRUSTED SIDE. The bound's terms from torch.distributions: an oracle that shares no code
with the reference solution or the submission, used to compute every expected value."""
import math

import torch
from torch.distributions import Bernoulli, Normal, kl_divergence


def kl_normal(qm, qv, pm, pv):
    """KL(N(qm, qv) || N(pm, pv)) summed over the last dimension -> (batch,)."""
    qm, qv, pm, pv = torch.broadcast_tensors(qm, qv, pm, pv)
    q = Normal(qm, qv.sqrt(), validate_args=False)
    p = Normal(pm, pv.sqrt(), validate_args=False)
    return kl_divergence(q, p).sum(-1)


def reconstruction(x, logits):
    """-log p(x | logits) of independent Bernoullis, summed over pixels -> (batch,)."""
    return -Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)


def negative_elbo(model, x, generator=None):
    """(nelbo, kl, rec) batch means for `model`'s encoder and decoder, one z per image."""
    m, v = model.enc(x)
    kl = kl_normal(m, v, model.z_prior_m, model.z_prior_v)
    z = m + v.sqrt() * torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
    rec = reconstruction(x, model.dec(z))
    return (kl + rec).mean(), kl.mean(), rec.mean()


def negative_elbo_conditional(model, x, y, generator=None):
    """(nelbo, kl, rec) batch means for a conditional model's encoder q(z|x,y) and decoder p(x|z,y)
    (y one-hot), prior N(model.z_prior_m, model.z_prior_v), one z per image."""
    m, v = model.enc(x, y)
    kl = kl_normal(m, v, model.z_prior_m, model.z_prior_v)
    z = m + v.sqrt() * torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
    rec = reconstruction(x, model.dec(z, y))
    return (kl + rec).mean(), kl.mean(), rec.mean()


def log_normal(z, m, v):
    """log N(z; m, diag(v)) summed over the last dimension -> (batch,)."""
    return Normal(m, v.sqrt(), validate_args=False).log_prob(z).sum(-1)


def pathwise_sample(m, v, eps):
    """z = m + sqrt(v) * eps, differentiable in m and v: the reparameterized sample of N(m, diag(v)).

    Where v == 0 the derivative in v (eps / (2 sqrt v)) is taken as 0: the sampler's answer
    for a zero variance is the point m, which no longer depends on v to first order."""
    safe = torch.where(v > 0, v, torch.ones_like(v))
    return m + torch.where(v > 0, safe.sqrt(), torch.zeros_like(v)) * eps


def kl_normal_logvar(qm, qs, pm, ps):
    """KL(N(qm, exp(qs)) || N(pm, exp(ps))) from means and log-variances, summed over the last dimension."""
    return kl_normal(qm, qs.exp(), pm, ps.exp())


def pathwise_sample_logvar(m, s, eps):
    """z = m + exp(s / 2) * eps, differentiable in m and s: the reparameterized sample of N(m, diag(exp(s)))."""
    return m + torch.exp(0.5 * s) * eps
def gaussian_kernel_sums(a, b, rows=500):
    """sum_ij exp(-|a_i - b_j|^2 / dim), float64, a block of rows at a time: 10,000 x 10,000 entries never
    exist at once (a block of 500 rows against 10,000 is 40 MB). The squared distances are expanded,
    |a|^2 - 2 a.b + |b|^2 (clamped at 0): in float64 their rounding (about 1e-15 |a|^2) is far below
    anything the checks resolve, and no (rows, n, dim) difference tensor is made."""
    dim = a.shape[-1]
    a, b = a.double(), b.double()
    b_norms = (b * b).sum(-1)
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(a), rows):
        block = a[start:start + rows]
        squared = ((block * block).sum(-1)[:, None] - 2 * block @ b.T + b_norms[None, :]).clamp_min(0)
        total = total + torch.exp(-squared / dim).sum()
    return total


def mmd(x, y, biased=True):
    """The squared MMD between the rows of x (n, dim) and y (m, dim), Gaussian kernel exp(-|a - b|^2 / dim)
    (bandwidth h^2 = dim / 2), float64: biased, the V-statistic (every pair); else the U-statistic (the xx
    and yy diagonals, each k = 1, left out). Differentiable in x and y."""
    x, y = x.double(), y.double()
    n, m = len(x), len(y)
    kxx, kyy, kxy = gaussian_kernel_sums(x, x), gaussian_kernel_sums(y, y), gaussian_kernel_sums(x, y)
    if biased:
        return kxx / n ** 2 + kyy / m ** 2 - 2 * kxy / (n * m)
    return (kxx - n) / (n * (n - 1)) + (kyy - m) / (m * (m - 1)) - 2 * kxy / (n * m)


def log_normal_pdf(sample, mean, logvar):
    """log N(sample; mean, diag(exp(logvar))) summed over the last dimension, float64."""
    return -0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


def conv_decoder(z, weights, relu=(True, True), last=None, layout="chw"):
    """The convolutional VAE's decoder from its parameters ({name: tensor}: fc.*, deconv1.*, deconv2.*):
    fc, ReLU, (batch, 32, 7, 7), a 4 x 4 transposed convolution of stride 2 and padding 1, ReLU, another
    -> logits (batch, 1, 28, 28). The keywords make the mistakes the checks name: relu (after fc, after
    deconv1) left out, `last` applied to the logits, layout "hwc" (the fc's output read as (7, 7, 32))."""
    import torch.nn.functional as F
    h = F.linear(z, weights["fc.weight"], weights["fc.bias"])
    h = torch.relu(h) if relu[0] else h
    channels = weights["deconv1.weight"].shape[0]
    side = int(round((h.shape[-1] / channels) ** 0.5))
    h = h.reshape(-1, channels, side, side) if layout == "chw" else \
        h.reshape(-1, side, side, channels).permute(0, 3, 1, 2)
    h = F.conv_transpose2d(h, weights["deconv1.weight"], weights["deconv1.bias"], stride=2, padding=1)
    h = torch.relu(h) if relu[1] else h
    h = F.conv_transpose2d(h, weights["deconv2.weight"], weights["deconv2.bias"], stride=2, padding=1)
    return h if last is None else last(h)
