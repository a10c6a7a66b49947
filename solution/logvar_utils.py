"""Gaussian helpers in the log-variance parameterisation.

The encoder of this VAE outputs, for each latent dimension, a mean m and s = log(sigma^2), the log of
the variance: any real s is a valid variance exp(s) > 0, with no softplus or clamp. Students implement
`sample_gaussian_logvar` and `kl_normal_logvar`. Shapes: the last dimension is the event dimension (z);
every earlier dimension is a batch dimension.
"""
import torch


def sample_gaussian_logvar(m, s):
    """Draw z ~ N(m, diag(exp(s))) with the reparameterization trick.

    Args:
        m: tensor (..., dim): mean
        s: tensor (..., dim): log-variance, s = log(sigma^2), broadcastable to m

    Returns:
        z: tensor of the broadcast shape of m and s, in their dtype, differentiable w.r.t. m and s

    Hint: z = m + exp(s / 2) * eps with eps ~ N(0, I) drawn fresh for every element. Compute the
    standard deviation as exp(s / 2), not as sqrt(exp(s)): in float32, exp(s) overflows to inf
    for s > 88.7 while exp(s / 2) is finite up to s = 177.
    """
    # BEGIN SOLUTION
    eps = torch.randn_like(m + s)
    z = m + torch.exp(0.5 * s) * eps
    # END SOLUTION
    return z


def kl_normal_logvar(qm, qs, pm, ps):
    """KL(q || p) between diagonal Gaussians given by means and log-variances, summed over the last dimension.

    Args:
        qm, qs: tensors (batch, dim): mean and log-variance of q
        pm, ps: tensors broadcastable to (batch, dim): mean and log-variance of p

    Returns:
        kl: tensor (batch,)

    Hint: for each dimension,
    KL = 1/2 * (ps - qs + exp(qs - ps) + (qm - pm)^2 * exp(-ps) - 1)
    Write the variance ratio as exp(qs - ps), never as exp(qs) / exp(ps), and take no log of an
    exp: both overflow or underflow in float32 where the KL itself is an ordinary number.
    """
    # BEGIN SOLUTION
    element_wise = 0.5 * (ps - qs + torch.exp(qs - ps) + (qm - pm).pow(2) * torch.exp(-ps) - 1)
    kl = element_wise.sum(-1)
    # END SOLUTION
    return kl
