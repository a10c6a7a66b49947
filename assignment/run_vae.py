"""Train the VAE on MNIST and report NELBO, KL and Rec on the CS236 test subset.

    python run_vae.py                      # 20,000 iterations, prints NELBO: x. KL: y. Rec: z
    python run_vae.py --runs 5             # five seeds, each printed, then mean +- standard error
    python run_vae.py --iters 2000 --out runs/quick --iwae

--out (default runs/vae) receives the checkpoint model.pt and the pictures of figures.py:
samples.png, reconstructions.png, interpolations.png, curves.png and latent.png.
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
from vae import VAE


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--out", type=Path, default=Path("runs/vae"),
                   help="folder for the checkpoint and PNGs (default: runs/vae)")
    p.add_argument("--iwae", action="store_true", help="also report IWAE bounds with 1, 10, 100, 1000 samples")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST cache (default: see data.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("iters", "z", "batch", "runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.lr <= 0:
        p.error("--lr must be positive")
    return args


def progress_bar(total, seed, quiet):
    """-> (callback for train.train, close). tqdm on stderr; shows it/s and the running NELBO."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=total, desc=f"seed {seed}", unit="it", file=sys.stderr, dynamic_ncols=True)

    def update(step, running):
        bar.update(step - bar.n)
        bar.set_postfix(nelbo=f"{running[0]:.2f}")

    return update, bar.close


def run_once(args, seed, device, train_u8, test_x):
    torch.manual_seed(seed)
    model = VAE(z_dim=args.z).to(device)
    update, close = progress_bar(args.iters, seed, args.quiet)
    curve = figures.TrainingCurve(then=update)
    try:
        train.train(model, train_u8, args.iters, batch=args.batch, lr=args.lr, seed=seed, progress=curve)
    finally:
        close()
    nelbo, kl, rec = train.evaluate(model, test_x)
    out_dir = args.out if args.runs == 1 else args.out / f"seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "model.pt")
    print(f"NELBO: {nelbo}. KL: {kl}. Rec: {rec}", flush=True)
    figures.save_pictures(model, test_x, out_dir, curve=curve, final=(nelbo, kl, rec))
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
