"""Training loop of the linear autoencoder (provided; the same for students and the grader).

MNIST's 60,000 training images are split once by a fixed permutation (seed SPLIT_SEED): the first
54,000 of it train, the last 6,000 validate (`split`). `train` draws batches of BATCH training images
(each epoch visits them once, in a new random order), scales them to [0, 1], and takes one Adam step
on your `reconstruction_loss(x, model(x))`, its learning rate falling linearly from LR to zero
(a constant rate leaves the weights jittering a few degrees around the principal subspace). It never sees a validation image.
"""
import torch

SPLIT_SEED = 13
TRAIN_FRACTION = 0.9
BATCH = 100
LR = 1e-2
ITERATIONS = 6000


def split(count=60000, seed=SPLIT_SEED):
    """-> (train indices, validation indices): a fixed permutation of range(count), 90% / 10%."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    cut = int(round(TRAIN_FRACTION * count))
    return order[:cut], order[cut:]


def scale(images_u8):
    """uint8 grey levels -> float32 in [0, 1]."""
    return images_u8.float() / 255.0


class Batches:
    """Batches of training images in [0, 1]: each epoch visits the images once, in a new random order."""

    def __init__(self, images_u8, batch, generator):
        self.images, self.batch, self.generator = images_u8, batch, generator      # (N, 784) uint8
        self.order, self.position = None, len(images_u8)

    def next(self):
        if self.position + self.batch > len(self.images):                         # a new epoch
            self.order = torch.randperm(len(self.images), generator=self.generator, device=self.images.device)
            self.position = 0
        rows = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        return scale(self.images[rows])


def make_optimizer(model, lr):
    """Adam (default betas and eps) on the parameters that are trained."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def train(model, train_images_u8, iters=ITERATIONS, loss=None, batch=BATCH, lr=LR, seed=0, progress=None,
          log_every=100):
    """Train `model` (x -> reconstruction) with Adam on the training images (uint8 (N, 784)).

    loss: callable(x, x_hat) -> scalar (default: ae.reconstruction_loss). progress: None, or a
    callable(step, mean loss of the last log_every steps). Returns the last such mean, a float."""
    if loss is None:
        from ae import reconstruction_loss as loss
    device = train_images_u8.device
    home = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    batches = Batches(train_images_u8.to(home), batch, torch.Generator(device=home).manual_seed(seed))
    optimizer = make_optimizer(model, lr)
    model.train()
    # One thread: products of 100 x 784 by 784 x k are too small to share, and on a busy host idle
    # threads waiting for each other made a run many times slower (measured: minutes for k = 2).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = _steps(model, batches, optimizer, loss, iters, lr, device, progress, log_every)
    finally:
        torch.set_num_threads(threads)
    return summary


def _steps(model, batches, optimizer, loss, iters, lr, device, progress, log_every):
    window, summary = [], float("nan")
    for step in range(1, iters + 1):
        x = batches.next().to(device)
        for group in optimizer.param_groups:                 # linear decay to zero: Adam's noise fades
            group["lr"] = lr * (1 - (step - 1) / iters)
        optimizer.zero_grad()
        value = loss(x, model(x))
        value.backward()
        optimizer.step()
        window.append(value.detach().float())
        if step % log_every == 0 or step == iters:
            summary = float(torch.stack(window).mean())
            window = []
            if progress is not None:
                progress(step, summary)
    return summary
