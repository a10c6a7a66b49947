"""The pictures of `run_conv_vae.py` that figures.py does not draw (provided).

    curves.png   the negative ELBO, KL and Rec after every epoch: on the CS236 test subset (100 images,
                 100 draws of z each) and the running mean of the epoch's training batches
    latent.png   the codes (means of q(z|x)) of test images, coloured by digit, on their first two
                 principal components
    walk.png     a walk in latent space: the codes on the straight line from the mean code of one
                 digit's test images to another's, decoded (both ends included)

samples.png and reconstructions.png are figures.py's. matplotlib and Pillow are imported only when a
picture is written (figures.py's rule).
"""
import torch

import figures

WALK_STEPS = 10
WALK_ZOOM = 4            # one row of 10 digits at one pixel per MNIST pixel (280 x 28) is too small to read


class EpochCurve:
    """(epoch, test (nelbo, kl, rec), training running (nelbo, kl, rec) or None) rows, one per evaluation."""

    def __init__(self):
        self.rows = []

    def add(self, epoch, test, running=None):
        self.rows.append((int(epoch), tuple(float(v) for v in test),
                          None if running is None else tuple(float(v) for v in running)))


def save_epoch_curves(curve, path, evaluated_on="CS236 test subset (100 images, 100 draws each)"):
    """Three panels (NELBO, KL, Rec) against the epoch: the test figures (dots and line) and the
    training batches' running mean over each epoch (dashed)."""
    figure = figures._figure(12, 3.8)
    panels = figure.subplots(1, 3, sharex=True)
    epochs = [row[0] for row in curve.rows]
    for i, (panel, name, colour) in enumerate(zip(panels, ("NELBO (= -ELBO)", "KL", "Rec"), ("C0", "C1", "C2"))):
        test = [row[1][i] for row in curve.rows]
        panel.plot(epochs, test, "o-", color=colour, lw=1.4, ms=4, label=f"test: {evaluated_on}")
        trained = [(row[0], row[2][i]) for row in curve.rows if row[2] is not None]
        if trained:
            panel.plot(*zip(*trained), "--", color="0.4", lw=1.0, label="training batches (epoch's mean)")
        shown = test[1:] if len(test) > 2 else test           # epoch 0 (untrained) would flatten the scale
        low, high = min(shown + [v for _, v in trained]), max(shown + [v for _, v in trained])
        pad = 0.08 * (high - low) + 0.5
        panel.set_ylim(low - pad, high + pad)
        title = name
        if test and not low - pad <= test[0] <= high + pad:
            title = f"{name}  (epoch {epochs[0]}: {test[0]:.1f})"
        panel.set_title(title, fontsize=10)
        panel.set_xlabel("epoch (600 batches of 100)")
        panel.grid(alpha=0.3)
        if test:
            panel.annotate(f"{test[-1]:.2f}", (epochs[-1], test[-1]), textcoords="offset points", xytext=(-6, 8),
                           ha="right", fontsize=8)
    panels[0].set_ylabel("nats per image")
    panels[0].legend(loc="upper right", fontsize=7)
    figure.savefig(path)


def save_latent_classes(codes, labels, path, title):
    """latent.png: the codes' first two principal components, one colour per digit, with a legend."""
    points, (x_name, y_name) = figures.latent_2d(codes)
    labels = torch.as_tensor(labels).cpu()
    figure = figures._figure(7.0, 5.8)
    axes = figure.subplots()
    for digit in sorted({int(v) for v in labels}):
        chosen = labels == digit
        axes.scatter(points[chosen, 0].numpy(), points[chosen, 1].numpy(), s=5, color=f"C{digit % 10}",
                     label=str(digit), edgecolors="none")
    axes.set_xlabel(x_name)
    axes.set_ylabel(y_name)
    axes.set_title(title, fontsize=10)
    axes.legend(title="digit", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=3)
    axes.grid(alpha=0.3)
    figure.savefig(path)


def class_mean_codes(codes, labels, digits):
    """The mean code of each digit in `digits` -> (len(digits), z)."""
    labels = torch.as_tensor(labels).to(codes.device)
    return torch.stack([codes[labels == d].mean(0) for d in digits])


def save_walk(model, codes, labels, path, start, end, steps=WALK_STEPS):
    """walk.png: one row of `steps` digits decoded from the line between the mean codes of digits
    `start` and `end` (pixel probabilities of p(x|z)), each MNIST pixel drawn WALK_ZOOM x WALK_ZOOM."""
    ends = class_mean_codes(codes, labels, (start, end))
    line = figures.interpolation_codes(ends[:1], ends[1:], steps)[0]
    with torch.no_grad():
        decoded = model.compute_sigmoid_given(line)
    grid = figures.image_grid(decoded, 1, steps)
    figures.write_grey_png(path, grid.repeat_interleave(WALK_ZOOM, 0).repeat_interleave(WALK_ZOOM, 1))
    return line
