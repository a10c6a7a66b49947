"""The pictures `run_vae.py` writes into its --out folder (provided).

    samples.png          10 x 20 digits drawn from the model: z ~ p(z), pixel probabilities of p(x|z)
    reconstructions.png  20 test digits (two of each) above their reconstructions from the mean code
    interpolations.png   one row per pair of test digits: 10 decodings of the codes on the straight
                         line from the first digit's code to the second's (both ends included)
    curves.png           the running NELBO, KL and Rec of training against the iteration, with the
                         final figures on the test subset
    latent.png           the codes of the 100 test digits in 2-D, coloured by digit: the first two
                         principal components, or the codes themselves when z has 2 dimensions

The digit grids are written with Pillow as 8-bit greyscale PNGs (one pixel per MNIST pixel), the
plots with matplotlib's Agg backend. Both libraries are imported only here, when the pictures are
written, so that start-up stays fast; without them training still runs and the pictures are
skipped, with one line saying so (`pip install matplotlib`, which brings Pillow).
"""
import sys
from pathlib import Path

import torch

SIDE = 28                       # an MNIST image is SIDE x SIDE pixels
INTERPOLATION_STEPS = 10
GRIDS = ("samples.png", "reconstructions.png", "interpolations.png")
PLOTS = ("curves.png", "latent.png")
_told = []                      # the missing-library line is printed once per process


class TrainingCurve:
    """The running (nelbo, kl, rec) of training, as train.train's `progress` callback reports it
    every `log_every` iterations; each report is passed on to `then` (e.g. a progress bar)."""

    def __init__(self, then=None):
        self.then = then
        self.iterations, self.values = [], []

    def __call__(self, step, running):
        try:
            nelbo, kl, rec = (float(v) for v in running)
        except (TypeError, ValueError):          # a loop that reports the NELBO alone
            nelbo, kl, rec = float(running), float("nan"), float("nan")
        self.iterations.append(int(step))
        self.values.append((nelbo, kl, rec))
        if self.then is not None:
            self.then(step, running)


def subset_labels(count=100):
    """Digits of the CS236 test subset: data.TEST_SUBSET_INDICES holds 10 of each, 0s first."""
    return torch.arange(count) // 10


def image_grid(images, rows, cols):
    """(rows * cols, 784) or (rows, cols, 784) intensities -> one (rows * 28, cols * 28) image,
    filled row by row."""
    tiles = images.detach().float().cpu().reshape(rows, cols, SIDE, SIDE)
    return tiles.permute(0, 2, 1, 3).reshape(rows * SIDE, cols * SIDE)


def write_grey_png(path, image):
    """A 2-D array of intensities in [0, 1] -> an 8-bit greyscale PNG, one pixel per value (Pillow)."""
    from PIL import Image
    pixels = (torch.as_tensor(image).detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    Image.fromarray(pixels.numpy()).save(path, format="PNG")          # uint8 2-D: mode "L"


def interpolation_pairs(labels):
    """Pairs (a, b) of positions in the test set: for each digit d present, its first image and the
    second image of the next digit present (0 -> 1, ..., 9 -> 0)."""
    labels = [int(v) for v in labels]
    where = {d: [i for i, v in enumerate(labels) if v == d] for d in sorted(set(labels))}
    digits = list(where)
    return [(where[d][0], where[e][min(1, len(where[e]) - 1)]) for d, e in zip(digits, digits[1:] + digits[:1])]


def interpolation_codes(start, end, steps=INTERPOLATION_STEPS):
    """(pairs, z) codes at both ends -> (pairs, steps, z): the straight line from start to end,
    both ends included."""
    t = torch.linspace(0, 1, steps, dtype=start.dtype, device=start.device).view(1, steps, 1)
    return (1 - t) * start.unsqueeze(1) + t * end.unsqueeze(1)


def principal_components(codes, k=2):
    """Project the rows of `codes` (n, d) on their first k principal components.

    -> (projection (n, k), components (k, d), share of the variance each explains (k,)). The
    codes are centred first; each component's sign makes its largest loading positive, so the
    picture does not flip between runs of the same model."""
    x = codes.detach().double().cpu()
    centred = x - x.mean(0, keepdim=True)
    _, singular, vt = torch.linalg.svd(centred, full_matrices=False)
    components = vt[:k]
    largest = components.abs().argmax(1)
    components = components * torch.sign(components[torch.arange(len(components)), largest]).unsqueeze(1)
    total = singular.pow(2).sum()
    share = singular[:k].pow(2) / total if total > 0 else torch.zeros(len(components), dtype=x.dtype)
    return centred @ components.T, components, share


def latent_2d(codes):
    """-> (points (n, 2), axis names): the codes themselves when they have 2 dimensions (or 1, drawn
    against 0), else their first two principal components."""
    codes = codes.detach().double().cpu()
    if codes.shape[1] == 2:
        return codes, ("z[0]", "z[1]")
    if codes.shape[1] == 1:
        return torch.cat((codes, torch.zeros_like(codes)), 1), ("z[0]", "")
    points, _, share = principal_components(codes, 2)
    return points, tuple(f"principal component {i + 1} ({100 * float(s):.0f}% of the variance)"
                         for i, s in enumerate(share))


# ------------------------------------------------------------------------------- the pictures

def save_samples(model, path, rows=10, cols=20):
    with torch.no_grad():
        samples = model.sample_sigmoid(rows * cols)
    write_grey_png(path, image_grid(samples, rows, cols))


def save_reconstructions(model, test_x, path, shown=None):
    shown = test_x[::5][:20] if shown is None else shown           # two of each digit
    with torch.no_grad():
        recon = model.compute_sigmoid_given(model.enc(shown)[0])
    write_grey_png(path, image_grid(torch.stack((shown.float(), recon)), 2, len(shown)))


def save_interpolations(model, test_x, labels, path, steps=INTERPOLATION_STEPS):
    pairs = interpolation_pairs(labels)
    with torch.no_grad():
        codes = model.enc(test_x)[0]                                # the mean of q(z|x)
        a, b = zip(*pairs)
        line = interpolation_codes(codes[list(a)], codes[list(b)], steps)
        decoded = model.compute_sigmoid_given(line.reshape(-1, line.shape[-1]))
    write_grey_png(path, image_grid(decoded, len(pairs), steps))
    return pairs


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_curves(curve, path, final=None):
    """Three panels (NELBO, KL, Rec) of the running training figures against the iteration; `final`:
    the (nelbo, kl, rec) printed for the test subset, drawn as dashed lines."""
    figure = _figure(12, 3.6)
    panels = figure.subplots(1, 3, sharex=True)
    steps = curve.iterations
    for i, (panel, name, colour) in enumerate(zip(panels, ("NELBO", "KL", "Rec"), ("C0", "C1", "C2"))):
        values = [v[i] for v in curve.values]
        panel.plot(steps, values, color=colour, lw=1.2, label="training (running mean)")
        if final is not None:
            panel.axhline(final[i], color="k", ls="--", lw=0.9, label=f"test subset: {final[i]:.2f}")
        # The scale leaves out the first 2% of training, so that the last nats stay readable; the
        # title gives the first value when it is off the scale.
        title = name
        shown = [v for v in values[len(values) // 50:] + ([final[i]] if final else []) if v == v]
        if shown:
            low, high = min(shown), max(shown)
            pad = 0.08 * (high - low) + 0.5
            panel.set_ylim(low - pad, high + pad)
            if values[0] == values[0] and not low - pad <= values[0] <= high + pad:
                title = f"{name}  (from {values[0]:.1f} at iteration {steps[0]})"
        panel.set_title(title)
        panel.set_xlabel("iteration")
        panel.grid(alpha=0.3)
        panel.legend(loc="best", fontsize=8)
    panels[0].set_ylabel("nats per image")
    figure.savefig(path)


def save_latent(model, test_x, labels, path):
    with torch.no_grad():
        codes = model.enc(test_x)[0]
    points, (x_name, y_name) = latent_2d(codes)
    figure = _figure(6.4, 5.6)
    axes = figure.subplots()
    labels = torch.as_tensor(labels).cpu()
    for digit in sorted({int(v) for v in labels}):
        chosen = labels == digit
        axes.scatter(points[chosen, 0].numpy(), points[chosen, 1].numpy(), s=22, color=f"C{digit % 10}",
                     label=str(digit), edgecolors="none")
    axes.set_xlabel(x_name)
    axes.set_ylabel(y_name)
    axes.set_title(f"codes (means of q(z|x)) of the {len(labels)} test digits")
    axes.legend(title="digit", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axes.grid(alpha=0.3)
    figure.savefig(path)


def _available(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def save_pictures(model, test_x, out_dir, curve=None, final=None, labels=None, log=None):
    """Write every picture that the installed libraries allow into out_dir -> (written, skipped) names.

    test_x: the test images (100, 784) of the CS236 subset (labels: subset_labels() unless given);
    curve: a TrainingCurve (curves.png is left out without one); final: the printed (nelbo, kl, rec)."""
    out_dir = Path(out_dir)
    labels = subset_labels(len(test_x)) if labels is None else labels
    model.eval()
    written, skipped, missing = [], [], []
    if _available("PIL.Image"):
        save_samples(model, out_dir / "samples.png")
        save_reconstructions(model, test_x, out_dir / "reconstructions.png")
        save_interpolations(model, test_x, labels, out_dir / "interpolations.png")
        written += GRIDS
    else:
        skipped += GRIDS
        missing.append("Pillow")
    plots = PLOTS if curve is not None and curve.iterations else PLOTS[1:]
    if _available("matplotlib"):
        if "curves.png" in plots:
            save_curves(curve, out_dir / "curves.png", final)
        save_latent(model, test_x, labels, out_dir / "latent.png")
        written += plots
    else:
        skipped += plots
        missing.insert(0, "matplotlib")
    if skipped and not _told:
        _told.append(True)
        verb = "is" if len(missing) == 1 else "are"
        (log or (lambda m: print(m, file=sys.stderr)))(
            f"pictures skipped: {', '.join(skipped)} ({' and '.join(missing)} {verb} not installed: "
            "`pip install matplotlib` to get them, Pillow comes with it)")
    return written, skipped
