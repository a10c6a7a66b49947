"""Train the log-variance VAE on MNIST and report NELBO, KL and Rec on the CS236 test subset.

    python run_logvar_vae.py                          # 20,000 iterations: NELBO: x. KL: y. Rec: z
    python run_logvar_vae.py --iters 2000 --out runs/logvar_quick

The model is logvar_vae.LogVarVAE: the CS236 VAE's networks with the encoder's second half read as
s = log(sigma^2); its bound calls your sample_gaussian_logvar and kl_normal_logvar (logvar_utils.py).
train.py's loop trains it. --out (default runs/logvar_vae) receives model.pt and the pictures of
figures.py: samples.png (200 digits decoded from prior draws), reconstructions.png (test images above
their reconstructions at the mean of q(z|x)), interpolations.png, curves.png and latent.png. The
encoder's log-variances on the test subset are summarised at the end (their range shows how far from
0 the s your functions must handle stray during training).
"""
import argparse
import os
import sys
from pathlib import Path

import torch

import data
import figures
import runtime
import train
from logvar_vae import LogVarVAE


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=20000, help="training iterations (default: 20000)")
    p.add_argument("--z", type=int, default=10, help="latent dimension (default: 10)")
    p.add_argument("--batch", type=int, default=100, help="batch size (default: 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="auto = CUDA when available, else MPS (Apple) where torch has it, else CPU (default: auto)")
    p.add_argument("--plain", action="store_true",
                   help="train with the plain loop of train.py as written, without fast.py (same as VAE_FAST=0)")
    p.add_argument("--out", type=Path, default=Path("runs/logvar_vae"),
                   help="folder for the checkpoint and PNGs (default: runs/logvar_vae)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST cache (default: see data.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("iters", "z", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.lr <= 0:
        p.error("--lr must be positive")
    return args


@torch.no_grad()
def log_variance_range(model, x):
    """(smallest, median, largest) log-variance s the trained encoder gives on x."""
    model.eval()
    s = model.enc(x.float())[1]
    return s.min().item(), s.median().item(), s.max().item()


def run(args, device, train_u8, test_x):
    torch.manual_seed(args.seed)
    model = LogVarVAE(z_dim=args.z).to(device)
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=args.iters, desc=f"seed {args.seed}", unit="it", file=sys.stderr, dynamic_ncols=True)

    def update(step, running):
        bar.update(step - bar.n)
        bar.set_postfix(nelbo=f"{running[0]:.2f}")

    curve = figures.TrainingCurve(then=update if bar is not None else None)
    try:
        train.train(model, train_u8, args.iters, batch=args.batch, lr=args.lr, seed=args.seed, progress=curve)
    finally:
        if bar is not None:
            bar.close()
    nelbo, kl, rec = train.evaluate(model, test_x)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "model.pt")
    print(f"NELBO: {nelbo}. KL: {kl}. Rec: {rec}", flush=True)
    low, median, high = log_variance_range(model, test_x)
    print(f"log-variance s of q(z|x) on the test subset: min {low:.2f}, median {median:.2f}, max {high:.2f}",
          flush=True)
    figures.save_pictures(model, test_x, args.out, curve=curve, final=(nelbo, kl, rec))
    return nelbo, kl, rec


def main(argv=None):
    args = parse_args(argv)
    if args.plain:
        os.environ["VAE_FAST"] = "0"
    runtime.configure_threads()
    device = runtime.pick_device(args.device)
    (train_images, _), (test_x, _) = data.load_or_exit(args.data_dir, "train", "subset")
    run(args, device, torch.from_numpy(train_images).to(device), torch.from_numpy(test_x).to(device))
    print(f"checkpoint and pictures in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
