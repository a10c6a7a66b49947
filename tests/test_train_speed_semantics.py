"""The fast training loop (fast.py) computes what the plain one (train.py) does.

Each speed device in fast.py is checked against the straightforward computation it replaces:
the binarizer against train.binarize's reading of the same random bits, FusedAdam against
torch.optim.Adam(fused=True) (bit for bit), the oneDNN matrix products against the stock
kernels (to float32 rounding, every layout, and falling back for everything else), and the
whole loop against a plain loop on the same batches (tests/test_train_split.py: against
train.py's own loop). CUDA tests skip without a GPU.
"""
import contextlib
import math

import pytest
import torch

from autograder.reference import data, fast, train, vae

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@pytest.fixture(scope="module")
def mnist():
    images, _ = data.load_mnist("train")
    return torch.from_numpy(images[:3000].copy())


# --- binarizer --------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_binarizer_is_a_table_lookup_of_the_same_bits(mnist, device):
    """Same generator state -> exactly `noise < THRESHOLD[grey]` for the noise read from the
    same full-range draws, with a fresh permutation at each epoch boundary; and the same
    batches as train.Batches draws."""
    images = mnist[:500].to(device)
    quick = fast.Binarizer(images, 100, torch.Generator(device=device).manual_seed(7))
    plain = train.Batches(images, 100, torch.Generator(device=device).manual_seed(7))
    twin = torch.Generator(device=device).manual_seed(7)
    table = fast._threshold_table(device)
    for epoch in range(3):
        order = torch.randperm(500, generator=twin, device=device)
        for k in range(5):
            rows = order[100 * k:100 * k + 100]
            bits = torch.empty(19600, dtype=torch.int64, device=device).random_(-2**63, None, generator=twin)
            noise = bits.view(torch.int16).view(100, 784)
            expected = (noise < table[images[rows].long()]).float()
            x = quick.next()
            assert x.dtype == torch.float32 and x.shape == (100, 784)
            assert torch.equal(x, expected), (epoch, k)
            assert torch.equal(plain.next(), expected), (epoch, k)


def test_threshold_table_gives_grey_over_255():
    t = fast._threshold_table("cpu").long() + 32768         # P(on) = t / 65536
    g = torch.arange(256)
    assert t[0] == 0
    assert torch.all((t / 65536 - g / 255).abs() < 2e-5)


def test_binarizer_full_range_bits_are_uniform_in_every_int16_lane():
    b = fast.Binarizer(torch.zeros(10, 784, dtype=torch.uint8), 10, torch.Generator().manual_seed(0))
    lanes = b._uniform_int16(400000).view(-1, 4).float()
    assert torch.all(lanes.min(0).values < -32000) and torch.all(lanes.max(0).values > 32000)
    assert torch.all(lanes.mean(0).abs() < 200)         # sd of the mean ~ 18918 / sqrt(1e5) = 60


def test_binarizer_on_odd_sizes():
    grey = torch.full((7, 5), 255, dtype=torch.uint8)    # 15 pixels a batch: not a multiple of 4
    x = fast.Binarizer(grey, 3, torch.Generator().manual_seed(0)).next()
    assert x.shape == (3, 5) and x.sum() >= 14


# --- Adam ---------------------------------------------------------------------------------

def _twin_models(device="cpu"):
    torch.manual_seed(0)
    a = vae.VAE().to(device)
    b = vae.VAE().to(device)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("device", DEVICES)
def test_fused_adam_equals_torch_optim_adam_bit_for_bit(device):
    a, b = _twin_models(device)
    opt_a = torch.optim.Adam([p for p in a.parameters() if p.requires_grad], lr=1e-3, fused=True)
    opt_b = fast._training_optimizer(b, 1e-3)
    assert isinstance(opt_b, fast.FusedAdam)
    gen = torch.Generator().manual_seed(0)
    for k in range(6):
        opt_a.zero_grad()
        opt_b.zero_grad()
        assert all(p.grad is None for p in b.parameters())
        for i, (pa, pb) in enumerate(zip(a.parameters(), b.parameters())):
            if pa.requires_grad and not (k == 3 and i == 0):          # step 3: one parameter without a gradient
                g = torch.randn(pa.shape, generator=gen).to(device)
                pa.grad, pb.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    for pa, m, v, step in zip(opt_a.param_groups[0]["params"], opt_b.exp_avgs, opt_b.exp_avg_sqs, opt_b.steps):
        state = opt_a.state[pa]
        assert torch.equal(state["exp_avg"], m) and torch.equal(state["exp_avg_sq"], v)
        assert torch.equal(state["step"], step) and step.dtype == torch.float32


def test_parameters_the_fused_kernel_cannot_take_leave_the_model_to_the_plain_loop(capsys):
    model = vae.VAE().double()
    model.enc.net[0].weight.data = model.enc.net[0].weight.data.float()   # two dtypes: not one fused call
    assert not fast.FusedAdam.supports(list(model.parameters()))
    fast._SAID.clear()
    assert fast.usable(model, "cpu") is False
    assert "fused Adam" in capsys.readouterr().err
    assert isinstance(train.make_optimizer(vae.VAE(), 1e-3), torch.optim.Adam)


def test_training_does_not_import_torch_dynamo(tmp_path):
    """torch.optim's first call imports torch._dynamo (~70 MB, ~1 s); the fast loop must not."""
    import subprocess
    import sys
    from autograder import paths
    code = (f"import sys; sys.path.insert(0, {str(paths.SOLUTION)!r})\n"
            "import torch, train, vae\n"
            "model = vae.VAE()\n"
            "train.train(model, torch.randint(0, 256, (300, 784), dtype=torch.uint8), 3)\n"
            "train.evaluate(model, torch.rand(10, 784).round(), repeats=2)\n"
            "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- oneDNN matrix products ----------------------------------------------------------------

def _layouts(m, k, n, gen):
    a = torch.randn(m, k, generator=gen)
    b = torch.randn(k, n, generator=gen)
    yield "contiguous", a, b
    yield "transposed", torch.randn(k, m, generator=gen).t(), torch.randn(n, k, generator=gen).t()
    yield "row slice", torch.randn(m + 5, k, generator=gen)[3:3 + m], b
    yield "column slice", torch.randn(m, k + 7, generator=gen)[:, 2:2 + k], b   # not plain: stock kernel
    yield "expanded", torch.randn(1, k, generator=gen).expand(m, k), b          # stride 0: stock kernel


@pytest.mark.parametrize("shape", [(100, 784, 300), (300, 100, 784), (1000, 300, 300), (3, 5, 7), (100, 10, 300)])
def test_onednn_products_match_the_stock_kernels(shape):
    gen = torch.Generator().manual_seed(0)
    m, k, n = shape
    bias = torch.randn(n, generator=gen)
    for name, a, b in _layouts(m, k, n, gen):
        want_mm = torch.mm(a.double(), b.double())
        want_addmm = torch.addmm(bias.double(), a.double(), b.double())
        got_mm = fast._onednn_mm(a, b)
        got_addmm = fast._onednn_addmm(bias, a, b)
        scale = math.sqrt(k) * 4
        assert got_mm.dtype == torch.float32 and got_mm.shape == (m, n) and got_mm.is_contiguous()
        assert (got_mm.double() - want_mm).abs().max() < 1e-5 * scale, name
        assert (got_addmm.double() - want_addmm).abs().max() < 1e-5 * scale, name
        got_scaled = fast._onednn_addmm(bias, a, b, beta=0.5, alpha=2.0)
        assert (got_scaled.double() - (0.5 * bias.double() + 2 * want_mm)).abs().max() < 1e-5 * scale * 2, name


def test_onednn_products_leave_other_cases_to_torch():
    a64 = torch.randn(50, 60, dtype=torch.float64)
    b64 = torch.randn(60, 70, dtype=torch.float64)
    assert torch.equal(fast._onednn_mm(a64, b64), a64 @ b64)
    empty = fast._onednn_mm(torch.randn(0, 5), torch.randn(5, 4))
    assert empty.shape == (0, 4)
    with pytest.raises(RuntimeError):
        fast._onednn_mm(torch.randn(3, 4), torch.randn(5, 6))      # torch's own shape error
    with pytest.raises(RuntimeError):
        fast._onednn_addmm(torch.randn(3), torch.randn(4, 5), torch.randn(5, 6))


def test_fast_matmul_is_scoped_and_autograd_sees_the_same_gradients(monkeypatch):
    monkeypatch.setitem(fast._ONEDNN, "pays", True)                 # force it, whatever this CPU
    torch.manual_seed(0)
    model = vae.VAE()
    x = torch.bernoulli(torch.full((100, 784), 0.3))

    def grads():
        model.zero_grad()
        torch.manual_seed(1)
        nelbo = model.negative_elbo_bound(x)[0]
        nelbo.backward()
        return nelbo.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    stock_loss, stock = grads()
    with fast.fast_matmul("cpu"):
        assert fast._ONEDNN["library"] is not None
        with fast.fast_matmul("cpu"):                               # nested: one registration
            pass
        assert fast._ONEDNN["library"] is not None
        fast_loss, quick = grads()
    assert fast._ONEDNN["library"] is None and fast._ONEDNN["depth"] == 0
    assert abs(float(fast_loss) - float(stock_loss)) < 1e-3
    for g_fast, g_stock in zip(quick, stock):
        assert torch.allclose(g_fast, g_stock, rtol=1e-3, atol=1e-5)
    again_loss, _ = grads()                                          # stock kernels are back
    assert float(again_loss) == float(stock_loss)


def test_probe_respects_vae_matmul(monkeypatch):
    assert fast._probe_onednn("blas") is False
    monkeypatch.delenv("VAE_MATMUL", raising=False)
    assert fast._probe_onednn("auto") in (True, False)


# --- the whole loop ----------------------------------------------------------------------

def _plain_loop(model, images, iters, seed, lr=1e-3):
    """The loop written plainly, on the same batches (same generator use as fast.Binarizer)."""
    binarizer = train.Batches(images, 100, torch.Generator(device=images.device).manual_seed(seed))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(iters):
        x = binarizer.next()
        optimizer.zero_grad()
        nelbo, kl, rec = model.negative_elbo_bound(x)
        nelbo.backward()
        optimizer.step()
    return float(nelbo.detach())


@pytest.mark.parametrize("device", DEVICES)
def test_train_follows_the_plain_loop(mnist, device, monkeypatch):
    """Same batches, same z draws, same Adam: the weights agree to float32 rounding."""
    monkeypatch.setenv("VAE_MATMUL", "blas")
    monkeypatch.delenv("VAE_FAST", raising=False)
    monkeypatch.setitem(fast._ONEDNN, "pays", None)
    images = mnist.to(device)
    a, b = _twin_models(device)
    torch.manual_seed(5)
    _plain_loop(a, images, 20, seed=5)
    torch.manual_seed(5)
    train.train(b, images, 20, seed=5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=1e-4, atol=1e-5), name


def test_train_reports_running_means_and_calls_progress(mnist):
    torch.manual_seed(0)
    model = vae.VAE()
    seen = []
    summary = train.train(model, mnist, 25, seed=0, progress=lambda step, s: seen.append((step, s)), log_every=10)
    assert [step for step, _ in seen] == [10, 20, 25]
    assert seen[-1][1] == summary and all(math.isfinite(v) for v in summary)
    nelbo, kl, rec = summary
    assert abs(nelbo - (kl + rec)) < 1e-3 * abs(nelbo)


def test_window_mean_accepts_odd_shapes():
    window = [(torch.tensor(3.0), torch.tensor([1.0]), torch.tensor([2.0, 2.0])) for _ in range(4)]
    assert fast._window_mean(window) == (3.0, 1.0, 2.0)


# --- thread tuning ----------------------------------------------------------------------------

def _drive_tuner(monkeypatch, cost, steps=3200):
    """Run a ThreadTuner against a fake clock where a step costs cost(step, threads) seconds."""
    clock = [0.0]
    monkeypatch.setattr(fast.time, "perf_counter", lambda: clock[0])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tuner = fast.ThreadTuner("cpu")
        used = []
        for step in range(1, steps + 1):
            tuner.tick(step)
            used.append(torch.get_num_threads())
            clock[0] += cost(step, torch.get_num_threads())
        tuner.restore()
        assert torch.get_num_threads() == 2
        return tuner, used
    finally:
        torch.set_num_threads(before)


def test_thread_tuner_keeps_all_threads_on_an_idle_machine(monkeypatch):
    tuner, used = _drive_tuner(monkeypatch, lambda step, n: 0.003 if n == 2 else 0.0045)
    assert [threads for _, threads in tuner.choices] == [2, 2, 2]
    assert used.count(1) <= 4 * 20                       # only the one-thread trial windows


def test_thread_tuner_reacts_within_a_watch_window(monkeypatch):
    """Contention from step 300 on: noticed by the 50-step watch, not at the next periodic check."""
    cost = lambda step, n: (0.026 if step >= 300 else 0.003) if n == 2 else 0.005   # noqa: E731
    tuner, used = _drive_tuner(monkeypatch, cost, steps=1000)
    assert tuner.choices[0][1] == 2 and tuner.choices[1][1] == 1
    assert tuner.choices[1][0] < 300 + 50 + 2 * 20 + 1
    assert used[999] == 1


def test_thread_tuner_drops_to_one_thread_while_the_machine_is_busy(monkeypatch):
    busy = lambda step: 1000 <= step < 2500             # noqa: E731: another process for a while
    tuner, used = _drive_tuner(monkeypatch, lambda step, n: (0.026 if busy(step) else 0.003) if n == 2 else 0.005)
    assert [threads for _, threads in tuner.choices] == [2, 1, 1, 2]
    assert used[1500] == 1 and used[3199] == 2


def test_thread_tuner_is_off_for_one_thread_and_for_cuda():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert not fast.ThreadTuner("cpu").active
        torch.set_num_threads(2)
        assert not fast.ThreadTuner("cuda").active
    finally:
        torch.set_num_threads(before)


# --- evaluation in pieces ------------------------------------------------------------------

def _row_mean_bound(rows):
    """A deterministic 'bound': three batch means of per-row statistics."""
    per_row = rows.double().sum(-1)
    return per_row.mean(), (per_row ** 2).mean(), rows.double()[:, 0].mean()


@pytest.mark.parametrize("n, repeats, samples", [(100, 100, 1), (100, 7, 1), (100, 3, 1000), (37, 11, 100),
                                                  (5000, 2, 1), (100, 1, 1)])
def test_mean_in_pieces_equals_one_big_batch(n, repeats, samples):
    x = torch.rand(n, 6, generator=torch.Generator().manual_seed(n))
    calls = []

    def bound(rows):
        calls.append(len(rows))
        return _row_mean_bound(rows)

    got = train._mean_in_pieces(bound, x, repeats, samples)
    want = [float(v) for v in _row_mean_bound(x.repeat(repeats, 1))]
    assert got == pytest.approx(want, rel=1e-12)
    assert max(calls) <= max(1, train._EVAL_ROWS // samples) or max(calls) == n <= train._EVAL_ROWS
    assert sum(calls) == n * repeats


def test_evaluate_uses_bounded_batches_and_the_given_bound():
    x = torch.rand(100, 784).round()
    sizes = []

    def bound(model, rows):
        sizes.append(len(rows))
        return _row_mean_bound(rows)

    got = train.evaluate(vae.VAE(), x, repeats=100, bound=bound)
    assert got == pytest.approx([float(v) for v in _row_mean_bound(x)], rel=1e-12)
    assert sum(sizes) == 10000 and max(sizes) <= train._EVAL_ROWS


def test_evaluate_iwae_runs_every_sample_count():
    torch.manual_seed(0)
    model = vae.VAE()
    x = torch.rand(20, 784).round()
    results = train.evaluate_iwae(model, x, sample_counts=(1, 10, 100), samples_per_point=100)
    assert sorted(results) == [1, 10, 100] and all(math.isfinite(v) for v in results.values())
    assert results[100] < results[1]


@CUDA
def test_cuda_training_and_evaluation(mnist):
    torch.manual_seed(0)
    model = vae.VAE().cuda()
    test_x = torch.from_numpy(data.load_test_subset()[0]).cuda()
    before = train.evaluate(model, test_x, repeats=5)[0]
    summary = train.train(model, mnist.cuda(), 300, seed=0)
    after = train.evaluate(model, test_x, repeats=5)[0]
    assert all(math.isfinite(v) for v in summary)
    assert after < before - 100, (before, after)
    assert all(p.device.type == "cuda" for p in model.parameters())


# --- CUDA graphs ---------------------------------------------------------------------------------

def _fake_capture(model):
    """Stands in for a CUDA graph on the CPU: replay re-runs the recorded step. A real graph
    overwrites its gradient buffers on each replay, so the fake starts from no gradients too."""
    def capture(step, stream):
        def replay():
            for p in model.parameters():
                p.grad = None
            step()
        return replay
    return capture


def _assert_same_parameters(a, b, **tolerance):
    """Every parameter of a equals b's: bit for bit, or allclose with the given tolerance."""
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert (torch.allclose(pa, pb, **tolerance) if tolerance else torch.equal(pa, pb)), name


def _batches(images, n, seed=3):
    binarizer = fast.Binarizer(images, 100, torch.Generator().manual_seed(seed))
    return [binarizer.next() for _ in range(n)]


def _run_steps(model, batches, step_factory):
    optimizer = fast._training_optimizer(model, 1e-3)
    step = step_factory(model, optimizer)
    torch.manual_seed(11)
    return [float(v) for x in batches for v in step(x)], step


def test_graphed_step_trains_exactly_like_eager_steps(mnist, monkeypatch):
    """Warm-up, capture and replays: every batch trained once, in order, each replay on its own
    batch (a graph that kept reading the first batch, or skipped the captured step, differs)."""
    monkeypatch.setattr(fast, "_on_stream", lambda stream: contextlib.nullcontext())
    batches = _batches(mnist, 8)
    a, b = _twin_models()
    eager, _ = _run_steps(a, batches, lambda m, o: (lambda x: fast._eager_step(m, o, x)))
    graphed, step = _run_steps(
        b, batches, lambda m, o: fast.GraphedStep(m, o, warmup=2, capture=_fake_capture(m), stream="cpu"))
    assert step.failure is None and step.replay is not None
    assert graphed == pytest.approx(eager, rel=1e-6)
    _assert_same_parameters(a, b)


def test_failed_capture_goes_on_eagerly_from_the_same_step(mnist, monkeypatch, capsys):
    monkeypatch.setattr(fast, "_on_stream", lambda stream: contextlib.nullcontext())
    batches = _batches(mnist, 6)

    def refusing_capture(step, stream):
        raise RuntimeError("operation not permitted when stream is capturing")

    a, b = _twin_models()
    eager, _ = _run_steps(a, batches, lambda m, o: (lambda x: fast._eager_step(m, o, x)))
    fast._SAID.clear()
    graphed, step = _run_steps(
        b, batches, lambda m, o: fast.GraphedStep(m, o, warmup=1, capture=refusing_capture, stream="cpu"))
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and "CUDA graph capture failed" in said[0] and "without CUDA graphs" in said[0]
    assert "not permitted" in step.failure and step.replay is None
    assert graphed == pytest.approx(eager, rel=1e-6)
    _assert_same_parameters(a, b)


def test_train_uses_graphs_only_on_cuda_and_when_allowed(monkeypatch):
    for value, wanted in (("auto", True), ("1", True), ("0", False), ("off", False)):
        monkeypatch.setenv("VAE_CUDA_GRAPHS", value)
        assert fast._cuda_graphs_wanted(torch.device("cuda")) is wanted
        assert fast._cuda_graphs_wanted(torch.device("cpu")) is False


class _NoiselessBound(torch.nn.Module):
    """An autoencoder whose bound draws no noise: graph and eager steps must agree closely."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = torch.nn.Linear(784, 32), torch.nn.Linear(32, 784)

    def negative_elbo_bound(self, x):
        h = torch.nn.functional.elu(self.enc(x))
        logits = self.dec(h)
        rec = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean()
        kl = 1e-3 * h.pow(2).sum(-1).mean()
        return kl + rec, kl, rec


@CUDA
def test_cuda_graph_replays_train_like_eager_steps(mnist):
    """Without noise in the bound the replayed graph must follow the eager steps: each replay
    reads its own batch and applies one Adam step."""
    batches = [x.cuda() for x in _batches(mnist, 30)]
    torch.manual_seed(0)
    a = _NoiselessBound().cuda()
    b = _NoiselessBound().cuda()
    b.load_state_dict(a.state_dict())
    eager, _ = _run_steps(a, batches, lambda m, o: (lambda x: fast._eager_step(m, o, x)))
    graphed, step = _run_steps(b, batches, lambda m, o: fast.GraphedStep(m, o))
    assert step.failure is None and step.replay is not None
    assert graphed == pytest.approx(eager, rel=1e-4, abs=1e-5)
    _assert_same_parameters(a, b, rtol=1e-4, atol=1e-5)


@CUDA
def test_cuda_graph_training_of_the_vae_learns_like_eager(mnist):
    """The VAE's bound draws z inside the graph; its runs must learn as the eager ones do."""
    images = mnist.cuda()
    finals = {}
    for graphs in ("1", "0"):
        torch.manual_seed(0)
        model = vae.VAE().cuda()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("VAE_CUDA_GRAPHS", graphs)
            finals[graphs] = train.train(model, images, 600, seed=0)
    assert all(math.isfinite(v) for v in finals["1"])
    assert finals["1"][0] < 250                      # from ~545 at the start
    assert abs(finals["1"][0] - finals["0"][0]) < 0.05 * finals["0"][0]
