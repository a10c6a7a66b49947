"""Checks of the convolutional VAE (problem `conv`): ConvVAE.negative_elbo_bound. Being written (issue 13)."""
from .base import CheckCase


class ConvElboChecks(CheckCase):
    pass
