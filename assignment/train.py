"""Training and evaluation loops (provided; identical for students and the grader).

The loop keeps everything on the device and never waits for it: no `.item()` per step,
the running loss stays a tensor and is read only when the progress bar is refreshed.
"""
import math
import time

import torch

# Dynamic binarization draws one 16-bit uniform r per pixel (as int16) and turns the pixel
# on when r < THRESHOLD[grey], THRESHOLD[g] = ceil(65536 * g / 255) - 32768 (clipped to
# int16): P(on) = g/255 within 2e-5, at a quarter of the cost of torch.bernoulli.
_THRESHOLD = torch.tensor([min(math.ceil(65536 * g / 255) - 32768, 32767) for g in range(256)],
                          dtype=torch.int16)


class Binarizer:
    """Fresh Bernoulli binarizations of uint8 images, drawn on their device."""

    def __init__(self, images_u8, batch, generator):
        self.images = images_u8                                         # (N, 784) uint8
        self.table = _THRESHOLD.to(images_u8.device)
        self.batch = batch
        self.generator = generator
        self.order = torch.empty(0, dtype=torch.long, device=images_u8.device)
        self.position = 0

    def next(self):
        """-> float32 (batch, 784) of 0/1, sampled without replacement within each epoch."""
        if self.position + self.batch > len(self.order):
            self.order = torch.randperm(len(self.images), generator=self.generator, device=self.images.device)
            self.position = 0
        rows = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        thresholds = self.table[self.images[rows].long()]           # (batch, 784) int16
        # int64 draws over the full range, reinterpreted as four uniform int16 each (a narrower
        # range would leave the top int16 of every draw non-uniform).
        bits = torch.randint(-2**63, 2**63 - 1, (thresholds.numel() // 4,), generator=self.generator,
                             dtype=torch.int64, device=thresholds.device)
        noise = bits.view(torch.int16).view_as(thresholds)
        return (noise < thresholds).to(torch.float32)


def make_optimizer(model, lr):
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, fused=fused)


def train(model, train_images_u8, iters, batch=100, lr=1e-3, seed=0, progress=None, log_every=100):
    """Train `model` with Adam on dynamically binarized images.

    train_images_u8: uint8 tensor (N, 784) on the training device.
    progress: None, or a callable(iteration, running_nelbo) called every `log_every` steps.
    Returns the final running mean of (nelbo, kl, rec) over the last log window, as floats.
    """
    device = train_images_u8.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    binarizer = Binarizer(train_images_u8, batch, generator)
    optimizer = make_optimizer(model, lr)
    model.train()
    window = torch.zeros(3, device=device)
    window_size = 0
    summary = (float("nan"),) * 3
    for step in range(1, iters + 1):
        x = binarizer.next()
        optimizer.zero_grad(set_to_none=True)
        nelbo, kl, rec = model.negative_elbo_bound(x)
        nelbo.backward()
        optimizer.step()
        window += torch.stack((nelbo.detach(), kl.detach(), rec.detach()))
        window_size += 1
        if step % log_every == 0 or step == iters:
            summary = tuple((window / window_size).tolist())  # the only host sync
            window.zero_()
            window_size = 0
            if progress is not None:
                progress(step, summary)
    return summary


@torch.no_grad()
def evaluate(model, x, repeats=100, bound=None):
    """Mean of `repeats` evaluations of the negative ELBO on x -> (nelbo, kl, rec) floats.

    The repeats run as one batch of x stacked `repeats` times: each is a batch mean, so
    the mean of the stacked batch equals the mean of the repeats.
    `bound`: a callable(model, x) -> (nelbo, kl, rec); default the model's own method.
    """
    model.eval()
    stacked = x.repeat(repeats, 1)
    values = bound(model, stacked) if bound is not None else model.negative_elbo_bound(stacked)
    return tuple(float(v) for v in values)


@torch.no_grad()
def evaluate_iwae(model, x, sample_counts=(1, 10, 100, 1000), samples_per_point=1000):
    """Negative IWAE bounds -> {iw: niwae}, each averaged over max(1, samples_per_point // iw) draws."""
    model.eval()
    results = {}
    for iw in sample_counts:
        repeats = max(1, samples_per_point // iw)
        total = sum(float(model.negative_iwae_bound(x, iw)[0]) for _ in range(repeats))
        results[iw] = total / repeats
    return results


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
