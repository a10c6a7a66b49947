"""Train the VAE with a KL weight beta on MNIST and report NELBO, KL and Rec on the CS236 test subset.

    python run_beta_vae.py                       # beta = 1 (the ELBO), 20,000 iterations: NELBO: x. KL: y. Rec: z
    python run_beta_vae.py --beta 0 --figure     # an autoencoder: near-perfect reconstructions, poor samples
    python run_beta_vae.py --beta 4 --iters 2000 --out runs/beta4 --figure

Training minimizes rec + beta * kl (train.py's loop, through beta_vae.KLWeighted). The printed NELBO,
KL and Rec are those of the unweighted bound (beta = 1) on the test subset, whatever beta trained;
at beta != 1 the weighted loss rec + beta * kl is printed too. --out (default runs/beta_vae) receives
model.pt and the pictures of figures.py (as run_vae.py writes them); with --figure also figure.png:
three rows of 16 digits, 16 test images, their reconstructions (pixel probabilities of p(x|z) at z = the
mean of q(z|x)) and 16 samples (at z drawn from the prior N(0, I)). The other flags are run_vae.py's.
"""
import argparse
import math
import os
import statistics
import sys
from pathlib import Path

import torch

import data
import figures
import runtime
import train
from beta_vae import BetaVAE, KLWeighted

FIGURE_COLUMNS = 16
FIGURE_ROWS = ("16 test images", "their reconstructions (z = mean of q(z|x))", "16 samples (z ~ N(0, I))")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term in the loss (default: 1.0)")
    p.add_argument("--figure", action="store_true",
                   help="also write figure.png: 16 test images, their reconstructions, 16 samples")
    p.add_argument("--iters", type=int, default=20000, help="training iterations (default: 20000)")
    p.add_argument("--z", type=int, default=10, help="latent dimension (default: 10)")
    p.add_argument("--batch", type=int, default=100, help="batch size (default: 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run (default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="auto = CUDA when available, else MPS (Apple) where torch has it, else CPU (default: auto)")
    p.add_argument("--plain", action="store_true",
                   help="train with the plain loop of train.py as written, without fast.py (same as VAE_FAST=0)")
    p.add_argument("--runs", type=int, default=1, help="independent runs with seeds seed, seed+1, ... (default: 1)")
    p.add_argument("--out", type=Path, default=Path("runs/beta_vae"),
                   help="folder for the checkpoint and PNGs (default: runs/beta_vae)")
    p.add_argument("--iwae", action="store_true", help="also report IWAE bounds with 1, 10, 100, 1000 samples")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST cache (default: see data.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("iters", "z", "batch", "runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.lr <= 0:
        p.error("--lr must be positive")
    if not args.beta >= 0 or math.isinf(args.beta):
        p.error("--beta must be a finite number >= 0")
    return args


def progress_bar(total, seed, quiet):
    """-> (callback for train.train, close). tqdm on stderr; shows it/s and the running loss."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=total, desc=f"seed {seed}", unit="it", file=sys.stderr, dynamic_ncols=True)

    def update(step, running):
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{running[0]:.2f}")

    return update, bar.close


def figure_positions(count=100, shown=FIGURE_COLUMNS):
    """Positions of the test images the figure shows: spread over the subset (10 of each digit, 0s
    first), so that every digit appears."""
    return [i * count // shown for i in range(shown)]


@torch.no_grad()
def figure_rows(model, test_x, columns=FIGURE_COLUMNS):
    """The figure's three rows -> (3, columns, 784): test images, their reconstructions at the mean
    code, samples from the prior (pixel probabilities)."""
    model.eval()
    shown = test_x[figure_positions(len(test_x), columns)].float()
    reconstructed = model.compute_sigmoid_given(model.enc(shown)[0])
    return torch.stack((shown, reconstructed, model.sample_sigmoid(columns)))


def save_figure(model, test_x, path, beta=None):
    """figure.png: three labelled rows of `FIGURE_COLUMNS` digits (matplotlib)."""
    rows = figure_rows(model, test_x)
    figure = figures._figure(FIGURE_COLUMNS * 0.6, 3 * 0.85 + 0.5)
    panels = figure.subplots(3, 1)
    for panel, row, title in zip(panels, rows, FIGURE_ROWS):
        panel.imshow(figures.image_grid(row, 1, len(row)).numpy(), cmap="gray", vmin=0, vmax=1,
                     interpolation="nearest")
        panel.set_title(title, fontsize=9)
        panel.set_axis_off()
    if beta is not None:
        figure.suptitle(f"beta = {beta:g}", fontsize=10)
    figure.savefig(path)


def run_once(args, seed, device, train_u8, test_x):
    torch.manual_seed(seed)
    model = BetaVAE(z_dim=args.z).to(device)
    update, close = progress_bar(args.iters, seed, args.quiet)
    curve = figures.TrainingCurve(then=update)
    try:
        train.train(KLWeighted(model, args.beta), train_u8, args.iters, batch=args.batch, lr=args.lr, seed=seed,
                    progress=curve)
    finally:
        close()
    nelbo, kl, rec = train.evaluate(model, test_x)          # beta = 1: the bound itself
    out_dir = args.out if args.runs == 1 else args.out / f"seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "model.pt")
    print(f"NELBO: {nelbo}. KL: {kl}. Rec: {rec}", flush=True)
    if args.beta != 1:
        print(f"Loss (rec + beta * kl, beta = {args.beta:g}): {rec + args.beta * kl}", flush=True)
    figures.save_pictures(model, test_x, out_dir, curve=curve, final=(nelbo, kl, rec) if args.beta == 1 else None)
    if args.figure:
        try:
            save_figure(model, test_x, out_dir / "figure.png", args.beta)
        except ImportError:
            print("figure.png skipped: matplotlib is not installed (`pip install matplotlib`)", file=sys.stderr)
    if args.iwae:
        for iw, value in train.evaluate_iwae(model, test_x).items():
            print(f"Negative IWAE-{iw}: {value}", flush=True)
    return nelbo, kl, rec


def mean_and_standard_error(values):
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def main(argv=None):
    args = parse_args(argv)
    if args.plain:
        os.environ["VAE_FAST"] = "0"
    runtime.configure_threads()
    device = runtime.pick_device(args.device)
    (train_images, _), (test_x, _) = data.load_or_exit(args.data_dir, "train", "subset")
    train_u8 = torch.from_numpy(train_images).to(device)
    test_x = torch.from_numpy(test_x).to(device)
    results = [run_once(args, args.seed + r, device, train_u8, test_x) for r in range(args.runs)]
    if args.runs > 1:
        for name, column in zip(("NELBO", "KL", "Rec"), zip(*results)):
            mean, se = mean_and_standard_error(column)
            print(f"{name} over {args.runs} runs: {mean:.3f} +- {se:.3f} (standard error)")
    print(f"checkpoint and pictures in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
