"""The baseline: a plain eager PyTorch training loop of the reference model, as a course
handout would write it (DataLoader-free, a host sync per iteration for the loss)."""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "solution"))
import data  # noqa: E402
from vae import VAE  # noqa: E402


def main(iters):
    start = time.perf_counter()
    images, _ = data.load_mnist("train")
    train = torch.from_numpy(images).float() / 255
    torch.manual_seed(0)
    model = VAE(z_dim=10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(iters):
        idx = torch.randint(0, len(train), (100,))
        x = torch.bernoulli(train[idx])
        opt.zero_grad()
        nelbo, kl, rec = model.negative_elbo_bound(x)
        nelbo.backward()
        opt.step()
        if i % 50 == 0:
            last = nelbo.item()
    print(f"plain loop: {iters} iterations in {time.perf_counter() - start:.1f} s, last NELBO {last:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
