"""Train the conditional VAE on MNIST and report NELBO, KL and Rec on the CS236 test subset,
each image with its label.

    python run_cvae.py                     # 20,000 iterations, prints NELBO: x. KL: y. Rec: z
    python run_cvae.py --runs 5            # five seeds, each printed, then mean +- standard error
    python run_cvae.py --iters 2000 --out runs/quick --iwae

--out (default runs/cvae) receives the checkpoint model.pt, samples.png (one row per digit:
10 samples of p(x|z,y) with z ~ N(0, I) for each label y = 0, ..., 9) and curves.png (the
running NELBO, KL and Rec of training). The flags are those of run_vae.py.
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
import train_cvae
from cvae import CVAE

SAMPLES_PER_DIGIT = 10


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
                   help="accepted for run_vae.py's sake: the CVAE always trains with the plain loop of train_cvae.py")
    p.add_argument("--runs", type=int, default=1, help="independent runs with seeds seed, seed+1, ... (default: 1)")
    p.add_argument("--out", type=Path, default=Path("runs/cvae"),
                   help="folder for the checkpoint and PNGs (default: runs/cvae)")
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
    """-> (callback for train_cvae.train, close). tqdm on stderr; shows it/s and the running NELBO."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=total, desc=f"seed {seed}", unit="it", file=sys.stderr, dynamic_ncols=True)

    def update(step, running):
        bar.update(step - bar.n)
        bar.set_postfix(nelbo=f"{running[0]:.2f}")

    return update, bar.close


@torch.no_grad()
def digit_rows(model, per_digit=SAMPLES_PER_DIGIT):
    """Pixel probabilities of `per_digit` samples for each label 0..9, row d conditioned on d -> (100, 784)."""
    model.eval()
    device = model.z_prior_m.device
    labels = torch.arange(train_cvae.CLASSES, device=device).repeat_interleave(per_digit)
    return model.sample_sigmoid(train_cvae.one_hot(labels))


def save_pictures(model, out_dir, curve=None, final=None):
    """samples.png (one row per digit) and curves.png, as far as Pillow and matplotlib are installed."""
    written = []
    try:
        figures.write_grey_png(out_dir / "samples.png",
                               figures.image_grid(digit_rows(model), train_cvae.CLASSES, SAMPLES_PER_DIGIT))
        written.append("samples.png")
    except ImportError:
        print("samples.png skipped: Pillow is not installed (`pip install matplotlib` brings it)", file=sys.stderr)
    if curve is not None and curve.iterations:
        try:
            figures.save_curves(curve, out_dir / "curves.png", final)
            written.append("curves.png")
        except ImportError:
            print("curves.png skipped: matplotlib is not installed", file=sys.stderr)
    return written


def run_once(args, seed, device, train_u8, train_labels, test_x, test_y):
    torch.manual_seed(seed)
    model = CVAE(z_dim=args.z).to(device)
    update, close = progress_bar(args.iters, seed, args.quiet)
    curve = figures.TrainingCurve(then=update)
    try:
        train_cvae.train(model, train_u8, train_labels, args.iters, batch=args.batch, lr=args.lr, seed=seed,
                         progress=curve)
    finally:
        close()
    nelbo, kl, rec = train_cvae.evaluate(model, test_x, test_y)
    out_dir = args.out if args.runs == 1 else args.out / f"seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "model.pt")
    print(f"NELBO: {nelbo}. KL: {kl}. Rec: {rec}", flush=True)
    save_pictures(model, out_dir, curve=curve, final=(nelbo, kl, rec))
    if args.iwae:
        for iw, value in train_cvae.evaluate_iwae(model, test_x, test_y).items():
            print(f"Negative IWAE-{iw}: {value}", flush=True)
    return nelbo, kl, rec


def mean_and_standard_error(values):
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def main(argv=None):
    args = parse_args(argv)
    runtime.configure_threads()
    device = runtime.pick_device(args.device)
    (train_images, train_labels), (test_x, test_labels) = data.load_or_exit(args.data_dir, "train", "subset")
    train_u8 = torch.from_numpy(train_images).to(device)
    train_labels = torch.from_numpy(train_labels).long().to(device)
    test_x = torch.from_numpy(test_x).to(device)
    test_y = train_cvae.one_hot(torch.from_numpy(test_labels)).to(device)
    results = [run_once(args, args.seed + r, device, train_u8, train_labels, test_x, test_y)
               for r in range(args.runs)]
    if args.runs > 1:
        for name, column in zip(("NELBO", "KL", "Rec"), zip(*results)):
            mean, se = mean_and_standard_error(column)
            print(f"{name} over {args.runs} runs: {mean:.3f} +- {se:.3f} (standard error)")
    print(f"checkpoint and pictures in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
