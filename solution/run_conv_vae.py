"""Train the convolutional VAE on MNIST; report NELBO, KL and Rec on the CS236 test subset.

    python run_conv_vae.py                         # 6,000 iterations (10 epochs): NELBO: x. KL: y. Rec: z
    python run_conv_vae.py --iters 1200 --walk 3 8 --out runs/quick

Training is train.py's loop (batches of 100, Adam 1e-3, freshly binarized images) on your
ConvVAE.negative_elbo_bound, the one-sample Monte Carlo bound; an epoch is 600 batches. After every
epoch (and before the first) the bound is evaluated on the CS236 test subset (100 images, 100 draws
of z each): the figures of curves.png. The printed figures are the same evaluation after training.

--out (default runs/conv_vae) receives model.pt and the pictures: curves.png (the per-epoch test
figures beside the training batches' mean), reconstructions.png (20 test digits above their
reconstructions from the mean code), latent.png (the codes of 2,000 test images coloured by digit,
first two principal components), walk.png (10 decodings on the line from the mean code of the test
images of digit A to that of digit B, --walk A B, default 1 7) and samples.png (200 digits decoded
from prior draws).
"""
import argparse
import os
import sys
from pathlib import Path

import torch

import data
import figures
import figures_conv
import runtime
import train
from conv_vae import ConvVAE

ITERATIONS = 6000
LATENT_POINTS = 2000
EVAL_SEED = 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=ITERATIONS, help=f"training iterations (default: {ITERATIONS}, "
                   "as the grader: 10 epochs of 600 batches of 100)")
    p.add_argument("--z", type=int, default=10, help="latent dimension (default: 10)")
    p.add_argument("--batch", type=int, default=100, help="batch size (default: 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--walk", type=int, nargs=2, default=(1, 7), metavar=("A", "B"),
                   help="walk.png goes from the mean code of digit A to that of digit B (default: 1 7)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="(default: auto)")
    p.add_argument("--plain", action="store_true", help="train with the plain loop of train.py (VAE_FAST=0)")
    p.add_argument("--out", type=Path, default=Path("runs/conv_vae"), help="(default: runs/conv_vae)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST cache (default: see data.py)")
    args = p.parse_args(argv)
    if args.iters < 1 or args.z < 1 or args.batch < 2 or args.lr <= 0:
        p.error("--iters and --z must be >= 1, --batch >= 2 and --lr positive")
    if not all(0 <= d <= 9 for d in args.walk) or args.walk[0] == args.walk[1]:
        p.error("--walk takes two different digits 0-9")
    return args


def test_figures(model, test_x, device):
    """(nelbo, kl, rec) of the bound on the test subset, 100 draws per image, from a seed of its own:
    the training's random numbers are left as they were (the run is the same with or without it)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        figures_now = train.evaluate(model, test_x)
    model.train()
    return figures_now


def main(argv=None):
    args = parse_args(argv)
    if args.plain:
        os.environ["VAE_FAST"] = "0"
    runtime.configure_threads()
    device = runtime.pick_device(args.device)
    (train_images, _), (test_images, test_labels), (test_x, _) = data.load_or_exit(args.data_dir, "train", "test",
                                                                                     "subset")
    train_u8 = torch.from_numpy(train_images).to(device)
    test_x = torch.from_numpy(test_x).to(device)
    epoch = len(train_images) // args.batch                      # 600 batches of 100
    torch.manual_seed(args.seed)
    model = ConvVAE(z_dim=args.z).to(device)
    curve = figures_conv.EpochCurve()
    curve.add(0, test_figures(model, test_x, device))

    def after(step, running):
        if step % epoch == 0 or step == args.iters:
            curve.add(step / epoch, test_figures(model, test_x, device), running)
            print(f"epoch {step / epoch:g}: test NELBO {curve.rows[-1][1][0]:.2f}", file=sys.stderr, flush=True)

    train.train(model, train_u8, args.iters, batch=args.batch, lr=args.lr, seed=args.seed, progress=after,
                log_every=epoch)
    nelbo, kl, rec = test_figures(model, test_x, device)
    print(f"NELBO: {nelbo}. KL: {kl}. Rec: {rec}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "model.pt")
    model.eval()
    shown = torch.from_numpy(test_images[:LATENT_POINTS].astype("float32") / 255).round().to(device)
    labels = torch.from_numpy(test_labels[:LATENT_POINTS].astype("int64"))
    with torch.no_grad():
        codes = model.enc(shown)[0]
    try:
        figures.save_samples(model, args.out / "samples.png")
        figures.save_reconstructions(model, test_x, args.out / "reconstructions.png")
        figures_conv.save_walk(model, codes, labels, args.out / "walk.png", *args.walk)
        figures_conv.save_epoch_curves(curve, args.out / "curves.png")
        figures_conv.save_latent_classes(codes, labels, args.out / "latent.png",
                                         f"codes (means of q(z|x)) of {len(labels):,} test images, "
                                         f"{args.iters:,} iterations")
    except ImportError:
        print("pictures skipped: matplotlib is not installed (`pip install matplotlib`)", file=sys.stderr)
    print(f"checkpoint and pictures in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
