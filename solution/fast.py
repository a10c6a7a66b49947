"""Speed machinery of the training loop (provided). IT CHANGES NOTHING THAT IS COMPUTED.

train.py holds the training loop as you read it. By default `train.train` hands that loop to
`train` below, which computes the same thing faster: the same batches from the same random
bits, the same Adam, the same calls of your `negative_elbo_bound`, in the same order; only the
float rounding of Adam's fused kernel and of oneDNN's matrix products differs
(tests/test_train_speed_semantics.py checks each piece against the plain computation, and
tests/test_train_split.py 50 steps of both loops against each other). You never need to read
this file.

The switch: VAE_FAST=0 (or `python run_vae.py --plain`) runs the plain loop of train.py as it
is written. Where this torch or device lacks what a piece needs, one line on stderr says so and
the plain computation runs instead: the whole plain loop on MPS or without torch's fused Adam
kernel; plain matrix products without oneDNN; eager steps without CUDA graphs.

How it is fast (see bench/ for the figures):
- nothing waits for the device: the running loss is read every `log_every` steps;
- binarization is a table lookup of the 16 random bits per pixel that train.binarize compares;
- Adam runs torch's fused kernel for all parameters at once (`FusedAdam`: the kernel and
  arguments of `torch.optim.Adam(fused=True)`, without torch.optim's per-call bookkeeping and
  its start-up cost);
- on a CPU, `ThreadTuner` falls back to one thread while another process crowds the cores
  (a multi-threaded step can then be 5-10x slower), and back when they are free again;
- float32 matrix products on the CPU go through oneDNN when a start-up probe finds it clearly
  faster than the default BLAS (MKL takes a generic AVX2 path on AMD processors, oneDNN uses
  AVX-512 there), and only while the loop's own steps run. VAE_MATMUL=blas turns this off,
  VAE_MATMUL=onednn forces it;
- on a GPU the whole step (forward, backward, Adam) is captured once as a CUDA graph and
  replayed (`GraphedStep`): launching a step's ~100 small kernels one by one costs more than
  running them. VAE_CUDA_GRAPHS=0 turns this off; a failed capture goes on with eager steps.
"""
import contextlib
import math
import os
import sys
import time
import warnings

import torch

# Values of VAE_FAST, VAE_MATMUL and VAE_CUDA_GRAPHS that turn a speed device off.
_SWITCHED_OFF = ("0", "off", "no", "false")
_SAID = set()


def _say(line):
    """The one line a fallback leaves on stderr (once per process)."""
    if line not in _SAID:
        _SAID.add(line)
        print(f"fast.py: {line}", file=sys.stderr, flush=True)


def wanted():
    """Whether the switch is on (VAE_FAST unset or not 0/off/no/false)."""
    return os.environ.get("VAE_FAST", "1").strip().lower() not in _SWITCHED_OFF


def usable(model, device):
    """Whether `train` below may train `model` on `device`: the switch is on and this torch has
    what the fast loop needs; if it has not, one line says so (the plain loop then runs)."""
    if not wanted():
        return False
    missing = _missing(model, torch.device(device))
    if missing is not None:
        _say(f"{missing}: training with the plain loop of train.py")
        return False
    return True


def _missing(model, device):
    """Why the fast loop cannot run here, or None."""
    if device.type not in ("cpu", "cuda"):
        return f"no speed-ups for {device.type} devices"
    params = [p for p in model.parameters() if p.requires_grad]
    if not params or not FusedAdam.supports(params):
        return "torch's fused Adam kernel (torch._fused_adam_) does not run on these parameters here"
    return None


# ---------------------------------------------------------------------------------------
# Batches: train.Batches, with train.binarize as a table lookup.

def _threshold_table(device):
    """THRESHOLD[g] = ceil(65536 * g / 255) - 32768, clipped to int16: with r = u - 32768 (the
    same 16 random bits read as int16), r < THRESHOLD[g] exactly when train.binarize turns the
    pixel on (u < 65536 * g / 255 and u < 65535)."""
    return torch.tensor([min(math.ceil(65536 * g / 255) - 32768, 32767) for g in range(256)],
                        dtype=torch.int16, device=device)


class Binarizer:
    """train.Batches, faster: the same batches from the same generator draws."""

    def __init__(self, images_u8, batch, generator):
        self.images = images_u8                                         # (N, 784) uint8
        self.table = _threshold_table(images_u8.device)
        self.batch = batch
        self.generator = generator
        self.order = torch.empty(0, dtype=torch.long, device=images_u8.device)
        self.position = 0

    def next(self):
        """-> float32 (batch, 784) of 0/1, sampled without replacement within each epoch."""
        if self.position + self.batch > len(self.order):
            self.order = torch.randperm(len(self.images), generator=self.generator, device=self.images.device)
            self.position = 0
        rows = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        grey = self.images.index_select(0, rows)                        # (batch, 784) uint8
        thresholds = self.table.index_select(0, grey.view(-1).int()).view(grey.shape)   # int16
        noise = self._uniform_int16(thresholds.numel()).view(grey.shape)
        if self._compare_into_float:
            try:
                x = torch.empty(grey.shape, dtype=torch.float32, device=grey.device)
                return torch.lt(noise, thresholds, out=x)
            except RuntimeError:               # a backend without mixed-dtype comparison
                self._compare_into_float = False
        return (noise < thresholds).to(torch.float32)

    _compare_into_float = True

    def _uniform_int16(self, n):
        """n independent uniform int16: full-range int64 draws, each read as four int16."""
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=self.images.device)
        bits.random_(-2**63, None, generator=self.generator)
        return bits.view(torch.int16)[:n]


# ---------------------------------------------------------------------------------------
# Adam.

class FusedAdam:
    """Adam exactly as `torch.optim.Adam(params, lr, fused=True)` computes it: the same fused
    kernel with the same arguments and the same state (exp_avg, exp_avg_sq, a float32 step
    count per parameter), default betas (0.9, 0.999) and eps 1e-8.

    What it leaves out is torch.optim's per-call bookkeeping (about 0.1 ms a step on a CPU)
    and its first-call import of torch._dynamo (about 70 MB and a second at start-up).
    Parameters without a gradient are skipped for the step, as torch.optim does.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # One float32 step count per parameter, as torch.optim keeps them, stored side by side so
        # that a step of every parameter counts with one add (a list add costs ~40 us on a CPU).
        self.step_counts = torch.zeros(len(self.params), dtype=torch.float32,
                                       device=self.params[0].device if self.params else "cpu")
        self.steps = list(self.step_counts.unbind())

    @staticmethod
    def supports(params):
        """Whether the fused kernel takes these parameters (one device, CPU or CUDA, one float dtype)."""
        params = [p for p in params if p.requires_grad]
        if not (params and hasattr(torch, "_fused_adam_") and len({(p.device, p.dtype) for p in params}) == 1
                and params[0].device.type in ("cpu", "cuda") and params[0].is_floating_point()):
            return False
        try:                                   # older torch has the kernel for CUDA only
            p, g, m, v = (torch.zeros(2, dtype=params[0].dtype, device=params[0].device) for _ in range(4))
            step = torch.zeros((), dtype=torch.float32, device=p.device)
            torch._fused_adam_([p], [g], [m], [v], [], [step], amsgrad=False,
                               lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False,
                               grad_scale=None, found_inf=None)
        except (RuntimeError, NotImplementedError, TypeError):
            return False
        return True

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        if None not in grads:
            params, exp_avgs, exp_avg_sqs, steps = self.params, self.exp_avgs, self.exp_avg_sqs, self.steps
            count = self.step_counts.add_
        else:
            live = [i for i, g in enumerate(grads) if g is not None]
            if not live:
                return
            params, grads, exp_avgs, exp_avg_sqs, steps = ([items[i] for i in live] for items in (
                self.params, grads, self.exp_avgs, self.exp_avg_sqs, self.steps))
            count = lambda one: torch._foreach_add_(steps, one)  # noqa: E731
        if any(g.is_sparse for g in grads):
            raise RuntimeError("Adam does not support sparse gradients")
        count(1)
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=self.lr,
                           beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                           maximize=False, grad_scale=None, found_inf=None)


def _training_optimizer(model, lr):
    """The fast loop's Adam (`usable` checked that the fused kernel takes these parameters)."""
    return FusedAdam([p for p in model.parameters() if p.requires_grad], lr)


# ---------------------------------------------------------------------------------------
# float32 matrix products through oneDNN (CPU only, and only where a probe says it pays).
# Registered as the CPU kernels of aten::mm and aten::addmm only while the loop's own steps run
# (never while evaluating, nor in `progress`), so autograd, your code and nn.Linear are
# untouched; anything that is not a plain float32 2-D product goes to the stock kernel (the
# `out=` variants, not overridden). An error raised inside these kernels (a shape mismatch in
# your code) leaves the loop with the kernels' frames cut off its traceback
# (`_hide_kernel_frames`): it reads as if torch's own kernel had raised it.

# Below about 2 million multiply-adds oneDNN's fixed cost per call (~15 us) outweighs its speed.
_ONEDNN_MIN_WORK = 1 << 21


def _plain_matrix(t):
    return t.dtype == torch.float32 and t.numel() > 0 and (t.is_contiguous() or t.t().is_contiguous())


# The kernels below run for every matrix product of a step, so the cheap tests come first.
def _onednn_mm(a, b):
    if (a.dim() == 2 and b.dim() == 2 and a.shape[0] * a.shape[1] * b.shape[1] >= _ONEDNN_MIN_WORK
            and a.shape[1] == b.shape[0] and _plain_matrix(a) and _plain_matrix(b)):
        return torch.ops.mkldnn._linear_pointwise.default(a, b.t(), None, "none", [], "")
    return torch.ops.aten.mm.out(a, b, out=a.new_empty(0))


def _onednn_addmm(bias, a, b, *, beta=1, alpha=1):
    if (beta == 1 and alpha == 1 and a.dim() == 2 and b.dim() == 2 and bias.dim() == 1
            and a.shape[0] * a.shape[1] * b.shape[1] >= _ONEDNN_MIN_WORK and a.shape[1] == b.shape[0]
            and bias.shape[0] == b.shape[1] and bias.dtype == torch.float32 and bias.is_contiguous()
            and _plain_matrix(a) and _plain_matrix(b)):
        return torch.ops.mkldnn._linear_pointwise.default(a, b.t(), bias, "none", [], "")
    return torch.ops.aten.addmm.out(bias, a, b, beta=beta, alpha=alpha, out=a.new_empty(0))


_KERNEL_CODE = (_onednn_mm.__code__, _onednn_addmm.__code__)
_ONEDNN = {"pays": None, "library": None, "depth": 0}


def onednn_matmul_pays():
    """Whether float32 CPU matrix products should go through oneDNN (decided once per process)."""
    if _ONEDNN["pays"] is None:
        _ONEDNN["pays"] = _probe_onednn(os.environ.get("VAE_MATMUL", "auto").strip().lower())
    return _ONEDNN["pays"]


def _probe_onednn(choice):
    if choice == "blas" or choice in _SWITCHED_OFF:
        return False
    try:
        if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
            _say("oneDNN's linear kernel (torch.ops.mkldnn._linear_pointwise) is not in this torch: "
                 "matrix products use torch's default kernels")
            return False
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(100, 784, generator=generator)
        w = torch.randn(300, 784, generator=generator)
        g = torch.randn(100, 300, generator=generator)
        for got, want in ((_onednn_mm(x, w.t()), torch.ops.aten.mm.out(x, w.t(), out=x.new_empty(0))),
                          (_onednn_mm(g.t(), x), torch.ops.aten.mm.out(g.t(), x, out=x.new_empty(0)))):
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-3):
                _say("oneDNN's products disagree with torch's here: matrix products use torch's default kernels")
                return False
        if choice == "onednn":
            return True

        def best(fn):
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(2):
                    fn()
                times.append(time.perf_counter() - start)
            return min(times)
        blas = best(lambda: torch.ops.aten.mm.out(g.t(), x, out=x.new_empty(0)))
        onednn = best(lambda: _onednn_mm(g.t(), x))
        return onednn < 0.8 * blas
    except Exception as error:  # noqa: BLE001 - an exotic build: keep the stock kernels
        _say(f"oneDNN's linear kernel fails here ({type(error).__name__}): matrix products use torch's default kernels")
        return False


@contextlib.contextmanager
def fast_matmul(device):
    """Within this block, float32 CPU mm/addmm go through oneDNN if `onednn_matmul_pays()`."""
    device = torch.device(device)
    if device.type != "cpu" or not onednn_matmul_pays():
        yield
        return
    if _ONEDNN["depth"] == 0:
        try:
            library = torch.library.Library("aten", "IMPL")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")    # "Overriding a previously registered kernel"
                library.impl("mm", _onednn_mm, "CPU")
                library.impl("addmm", _onednn_addmm, "CPU")
        except Exception as error:  # noqa: BLE001 - e.g. another library already overrides aten::mm
            _ONEDNN["pays"] = False
            _say(f"oneDNN's products could not be registered ({type(error).__name__}): "
                 "matrix products use torch's default kernels")
            library = None                     # a partial registration goes with it
        if library is None:
            yield
            return
        _ONEDNN["library"] = library
        del library
    _ONEDNN["depth"] += 1
    try:
        yield
    finally:
        _ONEDNN["depth"] -= 1
        if _ONEDNN["depth"] == 0:
            library, _ONEDNN["library"] = _ONEDNN["library"], None
            if hasattr(library, "_destroy"):
                library._destroy()
            # Without _destroy (an older torch) the registrations go with the last reference, here.


def _hide_kernel_frames(error):
    """Cut the traceback of `error` where it enters _onednn_mm / _onednn_addmm, so that an error
    raised in a matrix product (a shape mismatch in the model's code) ends at the line that asked
    for the product, as when torch's own kernel raises it."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        if tb.tb_next.tb_frame.f_code in _KERNEL_CODE:
            tb.tb_next = None
            return
        tb = tb.tb_next


# ---------------------------------------------------------------------------------------
# Threads.

class ThreadTuner:
    """Keeps the faster of two thread counts for a CPU training loop: all of torch's threads, or one.

    On an idle machine more threads are faster. When another process takes one of the cores,
    a multi-threaded step can become 5 to 10 times slower (every parallel region waits for a
    descheduled thread) while a one-thread step barely notices. So both counts are timed over
    `trial` steps each (from step `start`, then every `period` steps, and at once when the
    steps of the last `watch` got 1.5 times slower than when the count was chosen), and the
    faster one runs until the next check: about 1% of the steps run at the slower count on an
    idle machine.
    """

    def __init__(self, device, start=100, period=1000, trial=20, warm=4, watch=50):
        assert 1 <= warm < trial - 1
        self.many = torch.get_num_threads()
        self.active = torch.device(device).type == "cpu" and self.many > 1
        self.period, self.trial, self.warm, self.watch = period, trial, warm, watch
        self.next_check, self.phase = start, None    # phase: position in a running check
        self.reference = None                        # seconds per step of the chosen count
        self.watch_start = None
        self.choices = []                            # (step, threads chosen), for tests and benchmarks

    def tick(self, step):
        """Call at the start of every step (1-based)."""
        if not self.active:
            return
        now = time.perf_counter()
        if self.phase is None:
            if step >= self.next_check:
                self.phase, self.timings = 0, {}
            elif self.watch_start is not None and step - self.watch_start[0] >= self.watch:
                per_step = (now - self.watch_start[1]) / (step - self.watch_start[0])
                self.watch_start = (step, now)
                if per_step > 1.5 * self.reference:
                    self.phase, self.timings = 0, {}
            if self.phase is None:
                return
        trial, warm, phase = self.trial, self.warm, self.phase
        if phase == 0:
            torch.set_num_threads(self.many)
        elif phase in (warm, trial + warm):
            self._t0 = now
        elif phase == trial:                          # seconds per step with all threads
            self.timings[self.many] = (now - self._t0) / (trial - warm)
            torch.set_num_threads(1)
        elif phase == 2 * trial - 1:                  # and with one (this step runs with the choice)
            self.timings[1] = (now - self._t0) / (trial - warm - 1)
            best = min(self.timings, key=self.timings.get)
            torch.set_num_threads(best)
            self.choices.append((step, best))
            self.reference, self.watch_start = self.timings[best], (step, now)
            self.next_check, self.phase = step + self.period, None
            return
        self.phase += 1

    def restore(self):
        if self.active:
            torch.set_num_threads(self.many)


# ---------------------------------------------------------------------------------------
# CUDA graphs.

def _cuda_graphs_wanted(device):
    if device.type != "cuda" or os.environ.get("VAE_CUDA_GRAPHS", "auto").strip().lower() in _SWITCHED_OFF:
        return False
    if not (hasattr(torch.cuda, "CUDAGraph") and hasattr(torch.cuda, "graph")):
        _say("CUDA graphs are not in this torch: each step runs eagerly")
        return False
    return True


def _capture_cuda_graph(step, stream):
    """Record `step()` on `stream` as a CUDA graph (nothing runs yet) -> a callable that replays it.
    The warm-up steps ran on the same stream, so its library handles and workspaces exist."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        step()
    return graph.replay


class GraphedStep:
    """The training step (forward, backward, Adam) recorded once as a CUDA graph, then replayed.

    On a GPU the ~100 small kernels of a step take less time to run than the CPU needs to launch
    them one by one; a replay launches them all at once. Torch's recipe for capturing a whole
    step: `warmup` eager steps on a side stream, gradients set to None, then the capture; each
    later step copies its batch into the graph's input and replays (warm-up and capture share
    one stream). Every step trains: the warm-up steps eagerly, the captured one by its first
    replay.

    If the capture fails (a bound that waits for the host, an optimizer that cannot be captured),
    training goes on eagerly from that very step, `failure` says why and so does one line.
    `capture` is injectable so that the bookkeeping can be tested without a GPU.
    """

    def __init__(self, model, optimizer, warmup=3, capture=None, stream=None):
        self.model, self.optimizer, self.warmup = model, optimizer, warmup
        self.capture = capture or _capture_cuda_graph
        self.stream = stream                           # warm-up and capture stream, made on first use
        self.replay, self.failure, self.steps = None, None, 0

    def __call__(self, x):
        """Train on x -> (nelbo, kl, rec) tensors of this step (copies: the graph reuses its outputs)."""
        self.steps += 1
        if self.failure is not None:
            return _eager_step(self.model, self.optimizer, x)
        if self.stream is None:
            self.stream = torch.cuda.Stream(x.device)
        if self.replay is None and self.steps <= self.warmup:
            with _on_stream(self.stream):
                return _eager_step(self.model, self.optimizer, x)
        if self.replay is None:
            self.static_x = torch.empty_like(x)
            self.optimizer.zero_grad()                 # the graph allocates the gradients in its pool
            try:
                self.replay = self.capture(self._captured_step, self.stream)
            except Exception as error:                 # noqa: BLE001 - any failure: train eagerly
                self.failure = f"{type(error).__name__}: {error}".splitlines()[0]
                self.optimizer.zero_grad()
                _say(f"CUDA graph capture failed ({self.failure}): training goes on without CUDA graphs")
                return _eager_step(self.model, self.optimizer, x)
        self.static_x.copy_(x)
        self.replay()
        return self.static_out.clone().unbind()

    def _captured_step(self):
        nelbo, kl, rec = self.model.negative_elbo_bound(self.static_x)
        nelbo.backward()
        self.optimizer.step()
        self.static_out = torch.stack([v.detach().float().mean() for v in (nelbo, kl, rec)])


@contextlib.contextmanager
def _on_stream(stream):
    """Run the block on a side CUDA stream, ordered after and before the current stream's work."""
    current = torch.cuda.current_stream(stream.device)
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        yield
    current.wait_stream(stream)


# ---------------------------------------------------------------------------------------
# The loop.

def _eager_step(model, optimizer, x):
    optimizer.zero_grad()                      # sets the gradients to None
    nelbo, kl, rec = model.negative_elbo_bound(x)
    nelbo.backward()
    optimizer.step()
    return nelbo.detach(), kl.detach(), rec.detach()


def _window_mean(window):
    """Mean of the logged (nelbo, kl, rec) tensors of the last window -> tuple of floats (one sync)."""
    try:
        values = torch.stack([v for triple in window for v in triple]).view(-1, 3)
    except RuntimeError:                       # not three scalars: average whatever they are
        values = torch.stack([torch.stack([v.float().mean() for v in triple]) for triple in window])
    return tuple(values.float().mean(0).tolist())


def train(model, train_images_u8, iters, batch=100, lr=1e-3, seed=0, progress=None, log_every=100):
    """train.train's loop, fast; train.train calls it when `usable(model, device)`. Same
    arguments, same batches, same steps, same reports."""
    device = train_images_u8.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    binarizer = Binarizer(train_images_u8, batch, generator)
    optimizer = _training_optimizer(model, lr)
    model.train()
    graphed = GraphedStep(model, optimizer) if _cuda_graphs_wanted(device) else None
    summary = (float("nan"),) * 3
    threads = ThreadTuner(device)
    step = 0
    try:
        while step < iters:
            window = []
            with fast_matmul(device):          # oneDNN products for this window's steps only
                for step in range(step + 1, min(iters, (step // log_every + 1) * log_every) + 1):
                    threads.tick(step)
                    x = binarizer.next()
                    if graphed is not None:
                        window.append(graphed(x))
                    else:
                        window.append(_eager_step(model, optimizer, x))
            summary = _window_mean(window)     # the only host sync
            if progress is not None:
                progress(step, summary)
    except BaseException as error:
        _hide_kernel_frames(error)
        raise
    finally:
        threads.restore()
    return summary
