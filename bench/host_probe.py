"""How fast this host runs the reference training step right now: ms per step of the provided
loop (`train.train`, the reference model, batches of 100) on random images, median of blocks.

The 20,000-iteration figures depend on the host as much as on the code: on a shared virtual
machine the same process can run a step in 2.9 ms one minute and 4.5 ms the next. bench/run.py
prints this probe next to each long run, so a slow figure can be told from a slow host:
a whole `run_vae.py` costs about its fixed start-up cost + 20,000 x the probe.

    .venv/bin/python bench/host_probe.py [STEPS]      # default 600 (about 2-3 s)
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "solution"))
import runtime  # noqa: E402

runtime.configure_threads()
import torch  # noqa: E402

import train  # noqa: E402
from vae import VAE  # noqa: E402

BLOCK = 100


def probe(steps=600, warmup=200):
    """-> median ms per step over blocks of BLOCK steps, after `warmup` steps (past the loop's
    first thread-count trial, steps 100-140)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6000, 784), dtype=torch.uint8, generator=generator)
    torch.manual_seed(0)
    model = VAE(z_dim=10)
    marks = []
    train.train(model, images, warmup + steps, log_every=BLOCK,
                progress=lambda step, _: marks.append((step, time.perf_counter())))
    timed = [(s, t) for s, t in marks if s >= warmup]
    per_block = [(t1 - t0) / (s1 - s0) * 1e3 for (s0, t0), (s1, t1) in zip(timed, timed[1:])]
    return statistics.median(per_block)


if __name__ == "__main__":
    print(f"{probe(int(sys.argv[1]) if len(sys.argv) > 1 else 600):.3f}")
