"""Training the grader's digit classifier (autograder/digits.py): `python -m autograder classifier`.

Deterministic: one thread, a fixed seed for the initial weights, the order of the batches and the
augmentation, so the same command gives the same weights on the same machine. Data: the 60,000
MNIST training images only, as grey levels in [0, 1]; each image of a batch is binarized
(Bernoulli of its grey levels) with probability one half, so that binarized images and pixel
probabilities both read well. The 10,000 test images are used only to report the accuracy, on
their grey levels and binarized once with a fixed seed.
"""
import time

import numpy as np
import torch
from torch import nn

from .digits import DigitNet, sha256_of
from .reference import data as ref_data

SEED = 0
EPOCHS = 6
BATCH = 100
LEARNING_RATE = 2e-3
TEST_BINARIZE_SEED = 1
REQUIRED_ACCURACY = 0.985


def _grey(images_u8):
    return torch.from_numpy(images_u8.astype(np.float32) / 255)


def train(steps=None, seed=SEED, data_dir=None, log=print):
    """-> the trained DigitNet. `steps`: stop after that many batches (default: EPOCHS epochs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, labels = ref_data.load_mnist("train", data_dir)
        images, labels = _grey(images), torch.from_numpy(labels.astype(np.int64))
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = DigitNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        per_epoch = len(images) // BATCH
        total = steps if steps is not None else EPOCHS * per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
        loss_fn = nn.CrossEntropyLoss()
        step, start = 0, time.perf_counter()
        while step < total:
            order = torch.randperm(len(images), generator=generator)
            for first in range(0, per_epoch * BATCH, BATCH):
                if step >= total:
                    break
                index = order[first:first + BATCH]
                x = images[index]
                binarize = torch.rand(len(x), 1, generator=generator) < 0.5
                x = torch.where(binarize, (torch.rand(x.shape, generator=generator) < x).float(), x)
                loss = loss_fn(model(x), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                if step % per_epoch == 0:
                    log(f"step {step}/{total}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def test_images(data_dir=None):
    """-> (grey float32 (10000, 784), binarized with TEST_BINARIZE_SEED, labels int64)."""
    images, labels = ref_data.load_mnist("test", data_dir)
    grey = _grey(images)
    uniform = torch.rand(grey.shape, generator=torch.Generator().manual_seed(TEST_BINARIZE_SEED))
    return grey, (uniform < grey).float(), torch.from_numpy(labels.astype(np.int64))


def accuracy(model, images, labels, batch=1000):
    with torch.no_grad():
        predicted = torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, len(images), batch)])
    return float((predicted == labels).float().mean())


def accuracies(model, data_dir=None):
    """-> {"grey": accuracy on the grey test images, "binarized": on the binarized ones}."""
    grey, binary, labels = test_images(data_dir)
    return {"grey": accuracy(model, grey, labels), "binarized": accuracy(model, binary, labels)}


def main(out, steps=None, seed=SEED, log=print):
    """Train, report the test accuracy, save the state dict to `out` -> 0, or 1 below REQUIRED_ACCURACY."""
    model = train(steps, seed, log=log)
    scores = accuracies(model)
    log(f"test accuracy: grey {scores['grey']:.4f}, binarized {scores['binarized']:.4f} (10,000 MNIST test images)")
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    log(f"wrote {out} ({out.stat().st_size / 1000:.0f} kB, {sum(v.numel() for v in state.values()):,} parameters), "
        f"sha256 {sha256_of(out)}")
    if min(scores.values()) < REQUIRED_ACCURACY:
        log(f"below the required {REQUIRED_ACCURACY:.1%}: not fit to grade")
        return 1
    return 0
