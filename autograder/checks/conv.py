"""Checks of the convolutional VAE (problem `conv`): log_normal_pdf and ConvDecoder. Being written (issue 13)."""
from .base import CheckCase


class LogNormalPdfChecks(CheckCase):
    pass


class ConvDecoderChecks(CheckCase):
    pass
