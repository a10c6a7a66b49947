"""The pictures `run_ae.py` writes for each k into its --out folder (provided; matplotlib's Agg backend).

    reconstructions_k<k>.png  two rows of 10: training images and their reconstructions side by side,
                              then validation images and theirs
    interpolation_k<k>.png    a training image, the 10 decodings of the codes on the straight line from its
                              code to a validation image's code (both ends included), the validation image
    samples_k<k>.png          10 Gaussian codes decoded: z drawn from the Gaussian with the mean and covariance
                              of the training codes (a linear code has no fixed scale, so N(0, I) would mean
                              nothing), decoded and clipped to [0, 1] for display
"""
from pathlib import Path

import torch

SIDE = 28
SHOWN = 10
INTERPOLATION_STEPS = 10


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _show(axis, image, title=None):
    axis.imshow(image.detach().float().cpu().clamp(0, 1).reshape(SIDE, SIDE).numpy(), cmap="gray", vmin=0, vmax=1)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=7)


@torch.no_grad()
def save_reconstructions(model, train_x, val_x, path, k):
    figure = _figure(SHOWN * 1.1, 4.8)
    axes = figure.subplots(4, SHOWN)
    rows = ((train_x[:SHOWN], "training image"), (model(train_x[:SHOWN]), "reconstruction"),
            (val_x[:SHOWN], "validation image"), (model(val_x[:SHOWN]), "reconstruction"))
    for row, (images, name) in enumerate(rows):
        for column in range(SHOWN):
            _show(axes[row, column], images[column], name if column == 0 else None)
    figure.suptitle(f"Linear autoencoder, k = {k}: training (top) and validation (bottom) images above their "
                    "reconstructions", fontsize=9)
    figure.savefig(path)


@torch.no_grad()
def save_interpolation(model, start, end, path, k, steps=INTERPOLATION_STEPS):
    codes = model.encode(torch.stack([start, end]))
    weights = torch.linspace(0, 1, steps).unsqueeze(1)
    images = model.decode((1 - weights) * codes[0] + weights * codes[1])
    figure = _figure((steps + 2) * 1.0, 1.6)
    axes = figure.subplots(1, steps + 2)
    _show(axes[0], start, "training image")
    for i in range(steps):
        _show(axes[i + 1], images[i], f"t = {weights[i, 0]:.2f}")
    _show(axes[-1], end, "validation image")
    figure.suptitle(f"k = {k}: decoded codes on the line from a training image's code to a validation image's",
                    fontsize=9)
    figure.savefig(path)


@torch.no_grad()
def save_samples(model, train_x, path, k, seed=0):
    codes = model.encode(train_x).double()
    mean = codes.mean(0)
    covariance = torch.cov(codes.T).reshape(k, k) + 1e-9 * torch.eye(k, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(SHOWN, k, generator=generator, dtype=torch.float64)
    z = mean + noise @ torch.linalg.cholesky(covariance).T
    images = model.decode(z.float())
    figure = _figure(SHOWN * 1.0, 1.5)
    axes = figure.subplots(1, SHOWN)
    for i in range(SHOWN):
        _show(axes[i], images[i])
    figure.suptitle(f"k = {k}: 10 Gaussian codes (training codes' mean and covariance) decoded", fontsize=9)
    figure.savefig(path)


def save_pictures(model, train_x, val_x, out_dir, k, log=print):
    """All three pictures of one trained model; without matplotlib, one line saying so."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib is not installed: no pictures (pip install matplotlib)")
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    names = [out_dir / f"reconstructions_k{k}.png", out_dir / f"interpolation_k{k}.png", out_dir / f"samples_k{k}.png"]
    save_reconstructions(model, train_x, val_x, names[0], k)
    save_interpolation(model, train_x[0], val_x[0], names[1], k)
    save_samples(model, train_x, names[2], k)
    return names
