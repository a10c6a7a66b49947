"""TRUSTED SIDE. The grader's own digit classifier: it reads what a trained student model generates.

A small CNN (two 5x5 convolutions, 16 and 32 channels, each followed by ReLU and 2x2 max-pooling,
then 512 -> 64 -> 10; 46,730 parameters) trained by this project on the 60,000 MNIST training
images only (`python -m autograder classifier`, autograder/digit_training.py), never on anything a
student's model made. Its weights ship as autograder/digit_classifier.pt; `load()` refuses a file
whose sha256 is not config.DIGIT_CLASSIFIER_SHA256. It only ever scores tensors this process
computed itself (the decoder of the grader's reference model with the returned weights).

Input: (N, 784) pixel values in [0, 1]: grey levels, pixel probabilities (sigmoid of the decoder's
logits) or binarized images alike (it was trained on both).
"""
import functools
import hashlib
from pathlib import Path

import torch
from torch import nn

from . import config

WEIGHTS = Path(__file__).resolve().parent / "digit_classifier.pt"
CLASSES = 10


class ClassifierRefused(RuntimeError):
    """The weights file is missing or is not the one the grader was calibrated with."""


class DigitNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),       # 28 -> 24 -> 12
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),      # 12 -> 8 -> 4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, CLASSES))

    def forward(self, x):
        """(N, 784) in [0, 1] -> logits (N, 10)."""
        return self.head(self.features(x.reshape(-1, 1, 28, 28)))


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load(path=WEIGHTS, expected=None):
    """The classifier with the shipped weights, in eval mode; ClassifierRefused when the file is
    missing or its sha256 is not `expected` (default: config.DIGIT_CLASSIFIER_SHA256)."""
    expected = expected or config.DIGIT_CLASSIFIER_SHA256
    path = Path(path)
    try:
        found = sha256_of(path)
    except OSError as error:
        raise ClassifierRefused(f"the digit classifier's weights {path} cannot be read ({error}): "
                                "run `python -m autograder classifier`") from None
    if found != expected:
        raise ClassifierRefused(f"the digit classifier's weights {path} have sha256 {found}, not the "
                                f"{expected} recorded in autograder/config.py (DIGIT_CLASSIFIER_SHA256): "
                                "the file was changed; restore it (git checkout) or retrain, record the new "
                                "sha256 and recalibrate the sample-quality floors")
    model = DigitNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


@functools.lru_cache(maxsize=1)
def shipped():
    """load() of the shipped weights, once per process."""
    return load()


def probabilities(images, model=None, batch=1000):
    """(N, 784) in [0, 1] -> class probabilities (N, 10), float32, no gradient."""
    model = model or shipped()
    images = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 784)
    with torch.no_grad():
        return torch.cat([torch.softmax(model(images[i:i + batch]), dim=1)
                          for i in range(0, len(images), batch)]) if len(images) else torch.zeros(0, CLASSES)
