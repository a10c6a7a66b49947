"""Train the MMD-VAE (InfoVAE) on MNIST; report its loss, MMD and Rec on the CS236 test subset.

    python run_mmd_vae.py                          # 5,000 iterations: Loss: x. MMD: y. Rec: z
    python run_mmd_vae.py --compare --iters 2000   # also a VAE trained with the KL, for latent.png

Training minimizes rec + LAMBDA * mmd(codes, prior draws) (train.py's loop, through
mmd_vae.LossAsBound), the codes being the encoder's means. --out (default runs/mmd_vae) receives
model.pt, samples.png (200 digits decoded from prior draws), reconstructions.png (test images above
their reconstructions) and latent.png: the codes of 2,000 test images coloured by digit, projected on
their first two principal components, beside 2,000 prior draws projected the same way; with --compare,
a second panel shows the same for a VAE with the same networks trained as long on the negative ELBO (its
KL in closed form), the comparison the course asks for.
"""
import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

import data
import figures
import nns
import runtime
import train
import utils as ut
from mmd_vae import LAMBDA, MMDVAE, LossAsBound, mmd

LATENT_POINTS = 2000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=5000, help="training iterations (default: 5000, as the grader)")
    p.add_argument("--compare", action="store_true", help="also train a VAE with the KL for latent.png's second panel")
    p.add_argument("--batch", type=int, default=100, help="batch size (default: 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="(default: auto)")
    p.add_argument("--out", type=Path, default=Path("runs/mmd_vae"), help="(default: runs/mmd_vae)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST cache (default: see data.py)")
    args = p.parse_args(argv)
    if args.iters < 1 or args.batch < 2 or args.lr <= 0:
        p.error("--iters must be >= 1, --batch >= 2 and --lr positive")
    return args


class KLTrained(nn.Module):
    """The comparison (provided): the same networks trained on the negative ELBO, KL in closed form."""

    def __init__(self, z_dim=10):
        super().__init__()
        self.z_dim = z_dim
        self.enc, self.dec = nns.Encoder(z_dim), nns.Decoder(z_dim)

    def negative_elbo_bound(self, x):
        m, v = self.enc(x)
        kl = ut.kl_normal(m, v, torch.zeros(1, device=x.device), torch.ones(1, device=x.device))
        rec = -ut.log_bernoulli_with_logits(x, self.dec(ut.sample_gaussian(m, v)))
        return (kl + rec).mean(), kl.mean(), rec.mean()


@torch.no_grad()
def subset_figures(model, test_x):
    """(loss, mmd, rec) on the test subset: codes = encoder means, as many prior draws."""
    model.eval()
    codes = model.encode(test_x)
    rec = -ut.log_bernoulli_with_logits(test_x, model.dec(codes)).mean()
    divergence = mmd(codes, model.sample_z(len(test_x)))
    return float(rec + LAMBDA * divergence), float(divergence), float(rec)


def save_latent_panels(panels, path, seed=0):
    """latent.png: one panel per (title, codes, labels), each the first two principal components of the
    codes with prior draws projected on the same components (grey)."""
    figure = figures._figure(6.0 * len(panels) + 1.2, 5.6)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    prior = torch.randn(LATENT_POINTS, panels[0][1].shape[1], generator=torch.Generator().manual_seed(seed))
    for axis, (title, codes, labels) in zip(axes, panels):
        codes = codes.double().cpu()
        _, components, share = figures.principal_components(codes, 2)
        centre = codes.mean(0, keepdim=True)
        points = (codes - centre) @ components.T
        drawn = (prior.double() - centre) @ components.T
        axis.scatter(drawn[:, 0], drawn[:, 1], s=4, color="0.8", edgecolors="none", label="prior N(0, I)")
        for digit in range(10):
            chosen = labels == digit
            axis.scatter(points[chosen, 0], points[chosen, 1], s=5, color=f"C{digit}", edgecolors="none",
                         label=str(digit))
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(f"principal component 1 ({100 * float(share[0]):.0f}%)")
        axis.set_ylabel(f"principal component 2 ({100 * float(share[1]):.0f}%)")
        axis.grid(alpha=0.3)
    axes[-1].legend(title="digit", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=3)
    figure.savefig(path)


def main(argv=None):
    args = parse_args(argv)
    runtime.configure_threads()
    device = runtime.pick_device(args.device)
    (train_images, _), (test_images, test_labels), (test_x, _) = data.load_or_exit(args.data_dir, "train", "test",
                                                                                     "subset")
    train_u8 = torch.from_numpy(train_images).to(device)
    test_x = torch.from_numpy(test_x).to(device)
    shown = torch.from_numpy(test_images[:LATENT_POINTS].astype("float32") / 255).round().to(device)
    labels = torch.from_numpy(test_labels[:LATENT_POINTS].astype("int64"))
    torch.manual_seed(args.seed)
    model = MMDVAE().to(device)
    train.train(LossAsBound(model), train_u8, args.iters, batch=args.batch, lr=args.lr, seed=args.seed)
    loss, divergence, rec = subset_figures(model, test_x)
    print(f"Loss: {loss}. MMD: {divergence}. Rec: {rec}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "model.pt")
    with torch.no_grad():
        panels = [(f"MMD-VAE (lambda = {LAMBDA:g}), {args.iters:,} iterations", model.encode(shown), labels)]
        if args.compare:
            torch.manual_seed(args.seed)
            compared = KLTrained().to(device)
            with torch.enable_grad():
                train.train(compared, train_u8, args.iters, batch=args.batch, lr=args.lr, seed=args.seed)
            compared.eval()
            panels.append((f"VAE trained with the KL, {args.iters:,} iterations", compared.enc(shown)[0], labels))
    try:
        figures.save_samples(model, args.out / "samples.png")
        figures.save_reconstructions(model, test_x, args.out / "reconstructions.png")
        save_latent_panels(panels, args.out / "latent.png")
    except ImportError:
        print("pictures skipped: matplotlib is not installed (`pip install matplotlib`)", file=sys.stderr)
    print(f"checkpoint and pictures in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
