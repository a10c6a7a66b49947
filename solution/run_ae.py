"""Train the linear autoencoder on MNIST for several code sizes and compare it with PCA.

    python run_ae.py --k 2 5 10 50 100          # the five models; each: validation error, PCA's, the angle
    python run_ae.py --k 10 --iters 2000 --out runs/quick
    python run_ae.py --k 10 --nonlinear         # the optional non-linear variant (not graded)

MNIST's 60,000 training images are split by train_ae.split (90% train, 10% validation, a fixed
permutation). Each k trains a fresh LinearAutoencoder(k) with train_ae.train (Adam, batches of 100,
learning rate falling linearly from 0.01 to 0) on the training part only, then prints its validation
reconstruction error, PCA's at the same k (the principal directions of the centred training images,
by SVD of their scatter matrix), and the largest principal angle between the decoder's columns and PCA's top-k subspace.
--out (default runs/ae) receives the pictures of figures_ae.py for each k. --nonlinear trains
ae.NonlinearAutoencoder instead (ReLU code, sigmoid output, cross-entropy loss; learning rate 0.001):
its error is printed beside PCA's, there is no angle.
"""
import argparse
import math
import sys
from pathlib import Path

import torch

import data
import figures_ae
import runtime
import train_ae
from ae import LinearAutoencoder, NonlinearAutoencoder, cross_entropy_loss, reconstruction_loss


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[2, 5, 10, 50, 100], help="code sizes (default: 2 5 10 50 100)")
    p.add_argument("--iters", type=int, default=train_ae.ITERATIONS,
                   help=f"training iterations per k (default: {train_ae.ITERATIONS})")
    p.add_argument("--batch", type=int, default=train_ae.BATCH, help=f"batch size (default: {train_ae.BATCH})")
    p.add_argument("--lr", type=float, default=None, help="Adam's first learning rate (default: 0.01, "
                   "0.001 with --nonlinear)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches (default: 0)")
    p.add_argument("--nonlinear", action="store_true", help="the optional non-linear autoencoder (not graded)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu", help="(default: cpu)")
    p.add_argument("--out", type=Path, default=Path("runs/ae"), help="folder for the PNGs (default: runs/ae)")
    p.add_argument("--no-figures", action="store_true", help="do not write pictures")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST cache (default: see data.py)")
    args = p.parse_args(argv)
    if args.iters < 1 or args.batch < 1 or any(k < 1 or k > 784 for k in args.k):
        p.error("--iters and --batch must be at least 1, each k between 1 and 784")
    return args


def principal_directions(train_x):
    """(mean, directions (784, 784) by decreasing variance) of the training images, float64: the SVD of
    the centred images' scatter matrix (784 x 784; its singular vectors are theirs, and far quicker)."""
    x = train_x.double()
    mean = x.mean(0)
    centred = x - mean
    directions, _, _ = torch.linalg.svd(centred.T @ centred)
    return mean, directions


def largest_angle_degrees(columns, basis):
    q, _ = torch.linalg.qr(columns.double())
    cosines = torch.linalg.svdvals(basis.T @ q).clamp(max=1)
    return math.degrees(math.acos(float(cosines.min())))


@torch.no_grad()
def decoder_columns(model, k):
    """(784, k): decode(e_j) - decode(0), the decoder's weight whatever its parameters are called."""
    return (model.decode(torch.eye(k)) - model.decode(torch.zeros(1, k))).T


@torch.no_grad()
def mean_squared_error(model, x):
    return float(((model(x.float()).double() - x.double()) ** 2).mean())


def main(argv=None):
    args = parse_args(argv)
    runtime.configure_threads()
    device = runtime.pick_device(args.device)
    ((images, _),) = data.load_or_exit(args.data_dir, "train")
    images = torch.from_numpy(images.reshape(len(images), -1))
    train_idx, val_idx = train_ae.split(len(images))
    train_u8, val_x = images[train_idx], train_ae.scale(images[val_idx])
    train_x = train_ae.scale(train_u8)
    mean, directions = principal_directions(train_x)
    lr = args.lr if args.lr is not None else (1e-3 if args.nonlinear else train_ae.LR)
    for k in args.k:
        torch.manual_seed(args.seed)
        model = (NonlinearAutoencoder(k) if args.nonlinear else LinearAutoencoder(k)).to(device)
        loss = cross_entropy_loss if args.nonlinear else reconstruction_loss
        final = train_ae.train(model, train_u8.to(device), args.iters, loss=loss, batch=args.batch, lr=lr,
                               seed=args.seed)
        model = model.cpu()
        basis = directions[:, :k]
        centred = val_x.double() - mean
        pca_error = float(((centred - centred @ basis @ basis.T) ** 2).mean())
        error = mean_squared_error(model, val_x)
        line = (f"k={k}: training loss {final:.6f}, validation error {error:.6f}, PCA's {pca_error:.6f} "
                f"({100 * (error / pca_error - 1):+.2f}%)")
        if not args.nonlinear:
            line += f", largest principal angle {largest_angle_degrees(decoder_columns(model, k), basis):.2f} degrees"
        print(line, flush=True)
        if not args.no_figures:
            out = args.out / ("nonlinear" if args.nonlinear else "")
            figures_ae.save_pictures(model, train_x[:2000], val_x, out, k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
