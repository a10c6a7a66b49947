"""Training and evaluation loops (provided; the same for students and the grader).

This is how your `negative_elbo_bound` is used. `train` draws batches of 100 training images,
binarizes each afresh (a pixel is on with probability grey / 255), and takes one Adam step
(lr 1e-3) on the batch mean of your NELBO; `evaluate` averages your bound over many draws.

By default `train` hands this very loop to fast.py, which computes the same thing (to float
rounding) faster and which you never need to read. VAE_FAST=0 (or `python run_vae.py --plain`) runs the loop below
as written; fast.py also leaves it to this loop, in one line saying why, where it cannot run.
"""
import torch

import fast


def binarize(grey, generator):
    """Fresh 0/1 images from grey ones (uint8): each pixel on with probability grey / 255.

    Each pixel draws a uniform 16-bit number u in 0..65535 (the 64 random bits of one int64
    draw make four of them) and is on when u < 65536 * grey / 255; u = 65535 (one draw in
    65,536) is off even for a white pixel. fast.py draws these very bits, so that both loops
    train on the same batches.
    """
    n = grey.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=grey.device)
    bits.random_(-2**63, None, generator=generator)                      # 64 random bits each
    u = bits.view(torch.int16)[:n].view(grey.shape).int() + 32768        # four u per draw
    on = (u * 255 < grey.int() * 65536) & (u < 65535)
    return on.float()


class Batches:
    """Batches of freshly binarized training images: each epoch visits the images once, in a
    new random order (a last batch that would run past the end starts the next epoch)."""

    def __init__(self, images_u8, batch, generator):
        self.images, self.batch, self.generator = images_u8, batch, generator  # images: (N, 784)
        self.order, self.position = None, len(images_u8)

    def next(self):
        if self.position + self.batch > len(self.images):                   # a new epoch
            self.order = torch.randperm(len(self.images), generator=self.generator, device=self.images.device)
            self.position = 0
        rows = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        return binarize(self.images[rows], self.generator)                  # (batch, 784) of 0/1


def make_optimizer(model, lr):
    """Adam (default betas 0.9, 0.999 and eps 1e-8) on the parameters that are trained."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def train(model, train_images_u8, iters, batch=100, lr=1e-3, seed=0, progress=None, log_every=100):
    """Train `model` with Adam on dynamically binarized images.

    train_images_u8: uint8 tensor (N, 784) on the training device.
    progress: None, or a callable(step, (nelbo, kl, rec)) called every `log_every` steps with
    the means over those steps. Returns the last such means, as floats.
    """
    if fast.usable(model, train_images_u8.device):
        return fast.train(model, train_images_u8, iters, batch, lr, seed, progress, log_every)
    device = train_images_u8.device
    # The batches' random numbers come from a generator of our own, seeded with `seed`, next to
    # the images (on the CPU for Apple's MPS, whose random permutations some torch versions get wrong).
    home = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    batches = Batches(train_images_u8.to(home), batch, torch.Generator(device=home).manual_seed(seed))
    optimizer = make_optimizer(model, lr)
    model.train()
    window = []                                    # (nelbo, kl, rec) of the steps since the last report
    summary = (float("nan"),) * 3
    for step in range(1, iters + 1):
        x = batches.next().to(device)
        optimizer.zero_grad()                      # forget the previous step's gradients
        nelbo, kl, rec = model.negative_elbo_bound(x)
        nelbo.backward()                           # gradients of the batch mean NELBO
        optimizer.step()
        window.append(torch.stack([term.detach().float().mean() for term in (nelbo, kl, rec)]))
        # Reading a number waits for the device to finish its work: only every log_every steps.
        if step % log_every == 0 or step == iters:
            summary = tuple(torch.stack(window).mean(0).tolist())
            window = []
            if progress is not None:
                progress(step, summary)
    return summary


# Evaluations run in pieces of at most this many rows (data points x importance samples), so
# that memory stays small whatever the repeats (about 10 MB at 1,000 rows, and no slower).
_EVAL_ROWS = 1000


def _mean_in_pieces(bound, x, repeats, samples_per_row=1):
    """Mean over `repeats` copies of x of `bound(rows)`'s values (each a mean over its rows) ->
    tuple of floats. Copies of x are stacked into pieces of at most _EVAL_ROWS // samples_per_row
    rows (or x is cut into slices that size): as every value is a mean over its rows, the
    row-weighted mean of the pieces is the mean over all rows of all copies."""
    rows = max(1, _EVAL_ROWS // samples_per_row)
    if rows >= len(x):                                     # whole copies of x per call
        copies = max(1, rows // len(x))
        pieces = [(x.repeat(min(copies, repeats - done), 1)) for done in range(0, repeats, copies)]
    else:                                                  # slices of x, every slice `repeats` times
        pieces = [x[start:start + rows] for _ in range(repeats) for start in range(0, len(x), rows)]
    totals, weight = None, 0
    for piece in pieces:
        weighted = [len(piece) * float(v) for v in bound(piece)]
        totals = weighted if totals is None else [t + w for t, w in zip(totals, weighted)]
        weight += len(piece)
    return tuple(t / weight for t in totals)


@torch.no_grad()
def evaluate(model, x, repeats=100, bound=None):
    """Mean of `repeats` evaluations of the negative ELBO on x (fresh z each) -> (nelbo, kl, rec).
    `bound`: a callable(model, x) -> (nelbo, kl, rec); default the model's own method."""
    model.eval()
    call = (lambda rows: bound(model, rows)) if bound is not None else model.negative_elbo_bound
    return _mean_in_pieces(call, x, repeats)


@torch.no_grad()
def evaluate_iwae(model, x, sample_counts=(1, 10, 100, 1000), samples_per_point=1000):
    """Negative IWAE bounds -> {iw: niwae}, each averaged over max(1, samples_per_point // iw) draws."""
    model.eval()
    results = {}
    for iw in sample_counts:
        repeats = max(1, samples_per_point // iw)
        results[iw] = _mean_in_pieces(lambda rows: model.negative_iwae_bound(rows, iw), x, repeats, iw)[0]
    return results
