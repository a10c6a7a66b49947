"""The trusted side of the convolutional VAE's unit checks (autograder/checks/conv.py), without a sandbox:
the oracle agrees with the reference, the derived float32 bounds hold for float32 computations of the right
functions and are far below the mistakes the checks name, each named mistake is recognised, and the codes
the decoder checks use are clear of the ReLUs' kinks."""
import math

import numpy as np
import pytest
import torch

from autograder import oracle, reference
from autograder.checks import conv

PDF_STYLES = {
    "reference": reference.conv_vae.log_normal_pdf,
    "distributions": lambda x, m, s: torch.distributions.Normal(m, torch.exp(0.5 * s)).log_prob(x).sum(-1),
    "reciprocal": lambda x, m, s: -0.5 * ((x - m) ** 2 / s.exp() + s + math.log(2 * math.pi)).sum(-1),
}


def _float32(function, *arrays):
    return function(*(torch.from_numpy(a) for a in arrays)).numpy().astype(np.float64)


@pytest.mark.parametrize("style", sorted(PDF_STYLES))
@pytest.mark.parametrize("seed, shape, low, high", [(1, (40, 6), -3, 3), (2, (25, 3), 0.5, 2.5), (9, (50, 784), -3, 3)])
def test_pdf_float32_within_its_bound(style, seed, shape, low, high):
    x, m, s = conv._pdf_inputs(seed, shape, low, high)
    error = np.abs(_float32(PDF_STYLES[style], x, m, s) - conv.expected_pdf(x, m, s))
    assert np.all(error <= 0.5 * conv.pdf_tolerance(x, m, s)), (error / conv.pdf_tolerance(x, m, s)).max()


def test_pdf_oracle_is_the_reference_in_float64_with_broadcasting():
    x, m, s = (a.astype(np.float64) for a in conv._pdf_inputs(3, (3, 7, 5)))
    want = reference.conv_vae.log_normal_pdf(*(torch.from_numpy(a) for a in (x, m, s))).numpy()
    assert np.allclose(conv.expected_pdf(x, m, s), want, rtol=1e-12, atol=1e-12)
    broadcast = conv.expected_pdf(x[0], m[0, :1], s[0, :1])
    assert broadcast.shape == (7,)
    assert np.allclose(broadcast, conv.expected_pdf(x[0], np.repeat(m[0, :1], 7, 0), np.repeat(s[0, :1], 7, 0)))


@pytest.mark.parametrize("index", range(len(conv._pdf_candidates(*conv._pdf_inputs(2, (25, 3), 0.5, 2.5)))))
def test_each_pdf_mistake_is_named_and_outside_the_tolerance(index):
    x, m, s = conv._pdf_inputs(2, (25, 3), 0.5, 2.5)
    values, mistake = conv._pdf_candidates(x, m, s)[index]
    assert np.any(np.abs(values - conv.expected_pdf(x, m, s)) > conv.pdf_tolerance(x, m, s))
    said = conv.diagnose_pdf(values, x, m, s)
    assert said, mistake
    # an earlier candidate may coincide on these inputs (e.g. exp(-2s) vs 1/s^2 cannot): the first match is named
    first = next(i for i, (v, _) in enumerate(conv._pdf_candidates(x, m, s))
                 if np.all(np.abs(v - values) <= 2 * conv.pdf_tolerance(x, m, s) + 1e-4 * np.abs(v)))
    assert first == index, (first, index)


def _weights64(z_dim):
    return {name: torch.from_numpy(w).double() for name, w in conv.grader_weights(z_dim).items()}


@pytest.mark.parametrize("z_dim", conv.Z_DIMS)
def test_decoder_oracle_is_the_reference(z_dim):
    model = reference.conv_vae.ConvDecoder(z_dim).double()
    model.load_state_dict(_weights64(z_dim))
    z = torch.from_numpy(conv.clear_codes(z_dim, conv.VALUE_BATCH, 20 + z_dim)).double()
    with torch.no_grad():
        assert torch.allclose(model(z), oracle.conv_decoder(z, _weights64(z_dim)), rtol=1e-12, atol=1e-12)
    assert conv.expected_parameters(z_dim) == {name: tuple(w.shape) for name, w in conv.grader_weights(z_dim).items()}


@pytest.mark.parametrize("z_dim", conv.Z_DIMS)
def test_codes_are_clear_of_every_kink(z_dim):
    z = conv.clear_codes(z_dim, conv.GRADIENT_BATCH, 20 + z_dim)
    assert z.shape == (conv.GRADIENT_BATCH, z_dim) and z.dtype == np.float32
    assert np.all(conv._pre_activation_margin(z, conv.grader_weights(z_dim)) > 1)


@pytest.mark.parametrize("z_dim", conv.Z_DIMS)
def test_decoder_float32_within_its_bounds(z_dim):
    weights = conv.grader_weights(z_dim)
    z = conv.clear_codes(z_dim, conv.GRADIENT_BATCH, 20 + z_dim)
    cotangent = np.random.default_rng(5).normal(0, 1, (len(z), 784)).astype(np.float32)
    results = {}
    for dtype in (torch.float32, torch.float64):
        at = torch.from_numpy(z).to(dtype).requires_grad_(True)
        tensors = {name: torch.from_numpy(w).to(dtype).requires_grad_(True) for name, w in weights.items()}
        out = oracle.conv_decoder(at, tensors)
        grads = torch.autograd.grad((out * torch.from_numpy(cotangent).to(dtype).reshape(out.shape)).sum(),
                                    [at, *tensors.values()])
        results[dtype] = [out.detach().double().numpy()] + [g.double().numpy() for g in grads]
    low, high = results[torch.float32], results[torch.float64]
    assert np.all(np.abs(low[0] - high[0]) <= 0.5 * conv.forward_bound(z, weights))
    bounds = conv.gradient_bounds(z, weights, cotangent)
    for name, a, b in zip(["z", *weights], low[1:], high[1:]):
        assert np.all(np.abs(a - b) <= 0.5 * bounds[name]), name


@pytest.mark.parametrize("variant, mistake", conv.VARIANTS[1:])
def test_each_decoder_mistake_is_recognised(variant, mistake):
    z_dim = 10
    weights = conv.grader_weights(z_dim)
    z = conv.clear_codes(z_dim, conv.VALUE_BATCH, 20 + z_dim)
    got = conv.decoder64(z, weights, **variant).numpy()
    assert np.any(np.abs(got - conv.decoder64(z, weights).numpy()) > 2 * conv.forward_bound(z, weights))
    assert conv.identify(got, z, weights) == (variant, mistake)


def test_a_missing_bias_is_outside_the_forward_tolerance():
    for z_dim in conv.Z_DIMS:
        weights = conv.grader_weights(z_dim)
        z = conv.clear_codes(z_dim, conv.VALUE_BATCH, 20 + z_dim)
        without = dict(weights, **{"deconv2.bias": np.zeros_like(weights["deconv2.bias"])})
        difference = np.abs(conv.decoder64(z, without).numpy() - conv.decoder64(z, weights).numpy())
        assert np.all(difference > 2 * conv.forward_bound(z, weights))
        assert conv.identify(conv.decoder64(z, without).numpy(), z, weights) is None
