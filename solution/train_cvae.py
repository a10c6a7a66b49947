"""Training and evaluation loops of the conditional VAE (provided; the same for students and the grader).

The plain loop of train.py, with labels: `train` draws batches of 100 training images,
binarizes each afresh (train.py's binarize), gives your `negative_elbo_bound` the images and their
labels as one-hot vectors, and takes one Adam step (lr 1e-3) on the batch mean of your NELBO.
It runs as written (fast.py speeds up the VAE's loop only).
"""
import torch
from torch.nn import functional as F

from train import _mean_in_pieces as mean_in_pieces
from train import binarize, make_optimizer

CLASSES = 10


def one_hot(labels, classes=CLASSES):
    """Integer labels (batch,) -> one-hot float32 vectors (batch, classes)."""
    return F.one_hot(labels.long(), classes).float()


class LabelledBatches:
    """The batches of train.Batches (each epoch visits the images once, in a new random order),
    each with the labels of its images."""

    def __init__(self, images_u8, labels, batch, generator):
        self.images, self.labels = images_u8, labels                        # (N, 784) uint8, (N,)
        self.batch, self.generator = batch, generator
        self.order, self.position = None, len(images_u8)

    def next(self):
        """-> x (batch, 784) of 0/1, y (batch, 10) one-hot."""
        if self.position + self.batch > len(self.images):                   # a new epoch
            self.order = torch.randperm(len(self.images), generator=self.generator, device=self.images.device)
            self.position = 0
        rows = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        return binarize(self.images[rows], self.generator), one_hot(self.labels[rows])


def train(model, train_images_u8, train_labels, iters, batch=100, lr=1e-3, seed=0, progress=None,
                log_every=100):
    """Train the CVAE `model` with Adam on dynamically binarized images and their labels.

    train_images_u8: uint8 tensor (N, 784), train_labels: integer tensor (N,), on the training device.
    progress: None, or a callable(step, (nelbo, kl, rec)) called every `log_every` steps with
    the means over those steps. Returns the last such means, as floats.
    """
    device = train_images_u8.device
    home = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    batches = LabelledBatches(train_images_u8.to(home), train_labels.to(home), batch,
                              torch.Generator(device=home).manual_seed(seed))
    optimizer = make_optimizer(model, lr)
    model.train()
    window = []                                    # (nelbo, kl, rec) of the steps since the last report
    summary = (float("nan"),) * 3
    for step in range(1, iters + 1):
        x, y = batches.next()
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        nelbo, kl, rec = model.negative_elbo_bound(x, y)
        nelbo.backward()
        optimizer.step()
        window.append(torch.stack([term.detach().float().mean() for term in (nelbo, kl, rec)]))
        if step % log_every == 0 or step == iters:
            summary = tuple(torch.stack(window).mean(0).tolist())
            window = []
            if progress is not None:
                progress(step, summary)
    return summary


def _joined(x, y):
    """Images and their one-hot labels side by side (batch, 794): train's evaluation cuts rows, not columns."""
    return torch.cat([x, y.to(x.dtype)], dim=-1)


@torch.no_grad()
def evaluate(model, x, y, repeats=100, bound=None):
    """Mean of `repeats` evaluations of the negative ELBO on (x, y one-hot), fresh z each -> (nelbo, kl, rec).
    `bound`: a callable(model, x, y) -> (nelbo, kl, rec); default the model's own method."""
    model.eval()
    width = x.shape[-1]
    call = bound if bound is not None else (lambda m, images, labels: m.negative_elbo_bound(images, labels))
    return mean_in_pieces(lambda rows: call(model, rows[:, :width], rows[:, width:]), _joined(x, y), repeats)


@torch.no_grad()
def evaluate_iwae(model, x, y, sample_counts=(1, 10, 100, 1000), samples_per_point=1000):
    """Negative IWAE bounds of log p(x|y) -> {iw: niwae}, each averaged over max(1, samples_per_point // iw) draws."""
    model.eval()
    width, joined, results = x.shape[-1], _joined(x, y), {}
    for iw in sample_counts:
        repeats = max(1, samples_per_point // iw)
        results[iw] = mean_in_pieces(
            lambda rows: model.negative_iwae_bound(rows[:, :width], rows[:, width:], iw), joined, repeats, iw)[0]
    return results
