"""Checks of the convolutional VAE (problem `conv`): the training gate. Being written (issue 13)."""
from .base import CheckCase


class ConvTrainingChecks(CheckCase):
    pass
