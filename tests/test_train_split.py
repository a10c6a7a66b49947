"""The split training loop: train.py (the plain loop a student reads) and fast.py (the same loop,
fast). Both compute the same steps; every way the fast one cannot run here leaves one line and
a run that trains; an error in the student's bound points at the student's line; the grader's
worker binds and counts what both loops run; --device auto picks CUDA, then MPS, then the CPU.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import traceback
import types

import pytest
import torch

from autograder import config, paths
from autograder.reference import data, fast, runtime, train, vae

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@pytest.fixture(scope="module")
def mnist():
    images, _ = data.load_mnist("train")
    return torch.from_numpy(images[:3000].copy())


@pytest.fixture
def said(capsys):
    """-> a function returning the fast.py lines printed since the test began (lines said once
    per process are forgotten first, so that each test sees its own)."""
    fast._SAID.clear()
    capsys.readouterr()

    def lines():
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("fast.py:")]
    return lines


@pytest.fixture
def which_loop(monkeypatch):
    """Records whether fast.train ran ("fast") or the plain loop ("plain") on each train.train call."""
    ran = []
    fast_train = fast.train

    def spy(*args, **kwargs):
        ran.append("fast")
        return fast_train(*args, **kwargs)

    original = train.make_optimizer

    def plain_optimizer(model, lr):
        ran.append("plain")
        return original(model, lr)

    monkeypatch.setattr(fast, "train", spy)
    monkeypatch.setattr(train, "make_optimizer", plain_optimizer)
    return ran


def _twin_models(device="cpu"):
    torch.manual_seed(0)
    a = vae.VAE().to(device)
    b = vae.VAE().to(device)
    b.load_state_dict(a.state_dict())
    return a, b


def _train(model, images, iters, monkeypatch, plain, seed=0, log_every=10):
    reports = []
    with monkeypatch.context() as patch:
        if plain:
            patch.setenv("VAE_FAST", "0")
        else:
            patch.delenv("VAE_FAST", raising=False)
        torch.manual_seed(seed + 1)
        summary = train.train(model, images, iters, seed=seed, log_every=log_every,
                              progress=lambda step, means: reports.append((step, means)))
    return summary, reports


# --- the same steps ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("matmul", ["blas", "onednn"])
def test_plain_and_fast_loops_compute_the_same_first_50_steps(mnist, device, matmul, monkeypatch, which_loop):
    """Same seed -> same batches, same z draws, one Adam step each: the weights and the running
    means agree to float32 rounding (fused against torch.optim's Adam; with oneDNN products
    forced, rounding differences in near-zero gradients move a few weights by a small part of
    one Adam step, lr = 1e-3)."""
    if device == "cuda" and matmul == "onednn":
        pytest.skip("oneDNN products are a CPU device")
    monkeypatch.setenv("VAE_MATMUL", matmul)
    monkeypatch.setitem(fast._ONEDNN, "pays", None)
    images = mnist.to(device)
    a, b = _twin_models(device)
    plain_summary, plain_reports = _train(a, images, 50, monkeypatch, plain=True)
    fast_summary, fast_reports = _train(b, images, 50, monkeypatch, plain=False)
    assert which_loop == ["plain", "fast"]
    assert fast._ONEDNN["pays"] is (matmul == "onednn")
    assert [s for s, _ in plain_reports] == [s for s, _ in fast_reports] == [10, 20, 30, 40, 50]
    for (_, p), (_, f) in zip(plain_reports, fast_reports):
        assert p == pytest.approx(f, rel=1e-5)
    assert plain_summary == pytest.approx(fast_summary, rel=1e-5) and fast_summary == fast_reports[-1][1]
    atol = 1e-5 if matmul == "blas" else 1e-4
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=1e-4, atol=atol), (name, float((pa - pb).abs().max()))


def test_binarize_reads_every_16_bit_draw_as_the_fast_table_does(monkeypatch):
    """All 256 grey levels against all 65,536 values of u: train.binarize's comparison turns on
    exactly the pixels the fast table lookup turns on (the random bits are forced)."""
    levels = torch.arange(256, dtype=torch.uint8).repeat_interleave(65536).view(256, 65536)
    draws = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).repeat(256)   # r = u - 32768
    bits = draws.view(torch.int64)

    def forced_random_(self, *args, **kwargs):
        return self.copy_(bits)

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "random_", forced_random_)
        plain = train.binarize(levels, torch.Generator())
    quick = (draws.view(256, 65536) < fast._threshold_table("cpu")[levels.long()]).float()
    assert torch.equal(plain, quick)
    on = plain.sum(1)                                            # how many of the 65,536 u turn each level on
    assert on[0] == 0 and on[255] == 65535
    assert torch.all((on / 65536 - torch.arange(256) / 255).abs() < 2e-5)


def test_batches_are_drawn_without_replacement_within_each_epoch():
    images = torch.arange(10, dtype=torch.uint8).repeat_interleave(784).view(10, 784) * 25
    batches = train.Batches(images, 3, torch.Generator().manual_seed(0))
    seen = []
    for _ in range(3):                           # 9 of the 10 images, each once
        x = batches.next()
        assert x.shape == (3, 784) and x.dtype == torch.float32
        seen += batches.order[batches.position - 3:batches.position].tolist()
    assert len(set(seen)) == 9
    batches.next()                               # the 10th would run past the end: a new epoch
    assert batches.position == 3


# --- fallbacks: one line each, and training still runs ------------------------------------------

def _finite_run(model, images, monkeypatch, iters=12):
    summary, reports = _train(model, images, iters, monkeypatch, plain=False, log_every=5)
    assert [s for s, _ in reports] == [5, 10, 12] and all(math.isfinite(v) for v in summary)
    return summary


def test_without_torchs_fused_adam_the_plain_loop_trains(mnist, monkeypatch, said, which_loop):
    monkeypatch.delattr(torch, "_fused_adam_")
    _finite_run(vae.VAE(), mnist, monkeypatch)
    lines = said()
    assert which_loop == ["plain"] and len(lines) == 1
    assert "torch._fused_adam_" in lines[0] and "plain loop of train.py" in lines[0]


def test_a_torch_whose_fused_adam_has_no_cpu_kernel_trains_with_the_plain_loop(mnist, monkeypatch, said, which_loop):
    """torch 2.1-2.3: the fused kernel exists for CUDA only."""
    def cuda_only(*args, **kwargs):
        raise NotImplementedError("Could not run 'aten::_fused_adam_' with arguments from the 'CPU' backend")
    monkeypatch.setattr(torch, "_fused_adam_", cuda_only)
    _finite_run(vae.VAE(), mnist, monkeypatch)
    _finite_run(vae.VAE(), mnist, monkeypatch)               # a second run: no second line
    assert which_loop == ["plain", "plain"] and len(said()) == 1


def test_mps_is_left_to_the_plain_loop(said):
    assert fast.usable(vae.VAE(), torch.device("mps")) is False
    lines = said()
    assert len(lines) == 1 and "mps" in lines[0] and "plain loop of train.py" in lines[0]


def test_the_switch_runs_the_plain_loop_silently(mnist, monkeypatch, said, which_loop):
    _train(vae.VAE(), mnist, 3, monkeypatch, plain=True)
    assert which_loop == ["plain"] and said() == []
    monkeypatch.setenv("VAE_FAST", "off")
    assert fast.usable(vae.VAE(), "cpu") is False


def test_without_onednns_linear_kernel_products_stay_on_torchs_and_training_runs(mnist, monkeypatch, said,
                                                                               which_loop):
    monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())     # a torch without the kernel
    monkeypatch.setitem(fast._ONEDNN, "pays", None)
    monkeypatch.setenv("VAE_MATMUL", "onednn")
    _finite_run(vae.VAE(), mnist, monkeypatch)
    lines = said()
    assert which_loop == ["fast"] and fast._ONEDNN["pays"] is False
    assert len(lines) == 1 and "_linear_pointwise" in lines[0] and "default kernels" in lines[0]


def test_a_failing_onednn_probe_keeps_torchs_products(monkeypatch, said):
    def broken(*args, **kwargs):
        raise RuntimeError("no oneDNN here")
    monkeypatch.setattr(fast, "_onednn_mm", broken)
    assert fast._probe_onednn("onednn") is False
    lines = said()
    assert len(lines) == 1 and "default kernels" in lines[0]


def _counting_kernel(monkeypatch):
    calls = []
    kernel = fast._onednn_mm

    def counted(a, b):
        calls.append(1)
        return kernel(a, b)
    monkeypatch.setattr(fast, "_onednn_mm", counted)
    monkeypatch.setitem(fast._ONEDNN, "pays", True)
    return calls


@pytest.mark.parametrize("destroy", [True, False])
def test_the_overrides_go_when_the_block_ends_with_or_without_library_destroy(monkeypatch, destroy):
    """A torch without Library._destroy (older ones) unregisters when the last reference goes."""
    if not destroy:
        monkeypatch.delattr(torch.library.Library, "_destroy")
    calls = _counting_kernel(monkeypatch)
    a, b = torch.randn(100, 784), torch.randn(784, 300)
    with fast.fast_matmul("cpu"):
        a @ b
    assert len(calls) == 1
    a @ b
    assert len(calls) == 1 and fast._ONEDNN["library"] is None
    with fast.fast_matmul("cpu"):                 # and a new block registers again
        a @ b
    assert len(calls) == 2


def test_onednn_products_that_cannot_be_registered_leave_torchs_and_training_runs(mnist, monkeypatch, said):
    class Refusing(torch.library.Library):
        def impl(self, *args, **kwargs):
            raise RuntimeError("there's already a kernel registered from python overriding mm's behavior")
    monkeypatch.setattr(torch.library, "Library", Refusing)
    monkeypatch.setitem(fast._ONEDNN, "pays", True)
    _finite_run(vae.VAE(), mnist, monkeypatch)
    lines = said()
    assert fast._ONEDNN["pays"] is False and fast._ONEDNN["library"] is None
    assert len(lines) == 1 and "could not be registered" in lines[0] and "default kernels" in lines[0]
    a, b = torch.randn(100, 784), torch.randn(784, 300)
    assert torch.equal(a @ b, torch.ops.aten.mm.out(a, b, out=a.new_empty(0)))   # nothing left registered
    monkeypatch.setitem(fast._ONEDNN, "pays", True)
    with pytest.raises(ValueError) as raised, fast.fast_matmul("cpu"):
        raise ValueError("the model's own error")
    assert raised.value.__context__ is None          # not chained to the failed registration


def test_without_cuda_graphs_each_step_runs_eagerly(monkeypatch, said):
    monkeypatch.delattr(torch.cuda, "CUDAGraph")
    monkeypatch.delenv("VAE_CUDA_GRAPHS", raising=False)
    assert fast._cuda_graphs_wanted(torch.device("cuda")) is False
    lines = said()
    assert len(lines) == 1 and "CUDA graphs" in lines[0] and "eagerly" in lines[0]


@CUDA
def test_cuda_training_without_graphs_or_fused_adam_runs(mnist, monkeypatch, said):
    with monkeypatch.context() as patch:
        patch.delattr(torch.cuda, "CUDAGraph")
        _finite_run(vae.VAE().cuda(), mnist.cuda(), monkeypatch)
    with monkeypatch.context() as patch:
        patch.delattr(torch, "_fused_adam_")
        _finite_run(vae.VAE().cuda(), mnist.cuda(), monkeypatch)
    assert len(said()) == 2


# --- the overrides never reach code outside the loop's steps ----------------------------------------

def test_the_overrides_are_off_in_progress_evaluation_and_after_the_loop(mnist, monkeypatch):
    calls = _counting_kernel(monkeypatch)
    a, b = torch.randn(100, 784), torch.randn(784, 300)
    seen = []

    def progress(step, means):
        seen.append(fast._ONEDNN["library"])
        a @ b

    torch.manual_seed(0)
    model = vae.VAE()
    monkeypatch.delenv("VAE_FAST", raising=False)
    train.train(model, mnist, 20, progress=progress, log_every=5)
    during_training = len(calls)
    assert during_training > 0 and seen == [None] * 4
    train.evaluate(model, torch.rand(100, 784).round(), repeats=20)
    a @ b
    assert len(calls) == during_training and fast._ONEDNN["library"] is None


class _ShapeBug(torch.nn.Module):
    """A bound with a student's shape mistake in a matrix product."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(784, 300) * 0.01)

    def negative_elbo_bound(self, x):
        h = x.t() @ self.w                    # the mistake: (784, batch) @ (784, 300)
        return h.sum(), h.sum(), h.sum()


def test_a_shape_error_in_the_bound_leaves_no_kernel_frame(mnist, monkeypatch):
    monkeypatch.setitem(fast._ONEDNN, "pays", True)
    monkeypatch.delenv("VAE_FAST", raising=False)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as raised:
        train.train(_ShapeBug(), mnist, 3)
    frames = traceback.extract_tb(raised.value.__traceback__)
    assert frames[-1].name == "negative_elbo_bound" and "x.t() @ self.w" in frames[-1].line
    assert not any(frame.name.startswith("_onednn") for frame in frames)
    assert fast._ONEDNN["library"] is None and fast._ONEDNN["depth"] == 0
    # the control: inside the block, without the loop's cut, the kernel's frames do show
    with pytest.raises(RuntimeError) as uncut, fast.fast_matmul("cpu"):
        _ShapeBug().negative_elbo_bound(torch.zeros(100, 784))
    assert any(frame.name == "_onednn_mm" for frame in traceback.extract_tb(uncut.value.__traceback__))


def test_a_students_shape_bug_shows_the_students_line_through_run_vae(tmp_path):
    """vae.py with a shape bug, trained by run_vae.py with oneDNN's products forced: the traceback
    ends in the student's code and torch's own message, with no frame of fast.py's kernels."""
    for name in ("run_vae.py", "figures.py", "utils.py", *config.PROVIDED_FILES):
        shutil.copy(paths.SOLUTION / name, tmp_path / name)
    good = "rec = -ut.log_bernoulli_with_logits(x, self.dec(z))"
    bad = "rec = -ut.log_bernoulli_with_logits(x, self.dec(z[:, :5]))   # the bug"
    source = (paths.SOLUTION / "vae.py").read_text()
    assert good in source
    (tmp_path / "vae.py").write_text(source.replace(good, bad))
    env = dict(os.environ, VAE_MATMUL="onednn", PYTHONDONTWRITEBYTECODE="1")
    env.pop("VAE_FAST", None)
    done = subprocess.run([sys.executable, "run_vae.py", "--iters", "3", "--quiet", "--out", str(tmp_path / "out"),
                           "--data-dir", str(data.ensure_mnist(fetch=False))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    err = done.stderr
    assert "Traceback" in err and "mat1 and mat2 shapes cannot be multiplied (100x5 and 10x300)" in err, err[-3000:]
    assert 'vae.py", line' in err and "self.dec(z[:, :5])" in err, err[-3000:]
    assert "_onednn" not in err and "_ops.py" not in err, err[-3000:]
    last_frame = [line for line in err.splitlines() if line.strip().startswith("File ")][-1]
    assert "fast.py" not in last_frame, err[-3000:]


# --- the grader's worker binds and counts both loops ------------------------------------------------

def test_the_worker_binds_every_function_and_method_the_loops_run():
    """Every module-level function and every method of a class in train.py and fast.py is bound,
    except evaluation (which the worker never runs) and the switch's own print."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("worker_under_test", paths.PROJECT / "autograder" / "_worker.py")
    _worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_worker)                   # its definitions only: main() does not run
    not_run = {"train": {"evaluate", "evaluate_iwae", "_mean_in_pieces"}, "fast": set()}
    for module_name, module in (("train", train), ("fast", fast)):
        functions = {name for name, value in vars(module).items()
                     if isinstance(value, types.FunctionType) and value.__module__ == module.__name__}
        classes = {name: value for name, value in vars(module).items()
                   if isinstance(value, type) and value.__module__ == module.__name__}
        assert set(_worker._TRAIN_FUNCTIONS[module_name]) == functions - not_run[module_name], module_name
        assert set(_worker._TRAIN_METHODS[module_name]) == set(classes), module_name
        for name, cls in classes.items():
            methods = {attr for attr, value in vars(cls).items()
                       if isinstance(value, (types.FunctionType, staticmethod, classmethod))}
            assert set(_worker._TRAIN_METHODS[module_name][name]) == methods, (module_name, name)
        factory, batches = _worker._COUNTED[module_name]
        assert factory in functions and batches in classes


_WORKER_SCRIPT = """
import json, os, sys
import numpy as np
sys.path.insert(0, os.getcwd())
import _worker
_worker.bind_provided()
import fast, train
images = np.load("images.npy")
params = {"iterations": 30, "seed": 0, "z_dim": 10, "device": "cpu", "parameters": ["dec.net.4.bias"]}
seen = {}
for switch in ("1", "0"):
    os.environ["VAE_FAST"] = switch
    info, out = _worker._thawed_reply(_worker.op_train(params, {"images": images}))   # as serve thaws it
    seen[switch] = dict(info["audit"], optimizer=type(_worker._RUN["optimizers"][0]).__name__,
                        bias=out["w_dec.net.4.bias"].tolist())
fast._eager_step = lambda *args: None
train.binarize = lambda *args: None
train.Batches.next = lambda self: None            # an override on the counted class the loop uses
fast.FusedAdam.step = lambda self: None
seen["replaced"] = _worker.replaced_originals()
print(json.dumps(seen))
"""


def test_the_worker_counts_the_steps_and_batches_of_both_loops(tmp_path, mnist):
    import numpy as np
    for name in (*config.PROVIDED_FILES, "utils.py", "vae.py"):
        shutil.copy(paths.SOLUTION / name, tmp_path / name)
    for name in ("_worker.py", "wire.py"):
        shutil.copy(paths.PROJECT / "autograder" / name, tmp_path / name)
    np.save(tmp_path / "images.npy", mnist[:1000].numpy())
    env = {k: v for k, v in os.environ.items() if k != "VAE_FAST"}
    done = subprocess.run([sys.executable, "-I", "-c", _WORKER_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    for switch, optimizer in (("1", "FusedAdam"), ("0", "Adam")):
        audit = seen[switch]
        assert audit["optimizer"] == optimizer
        assert audit["replaced"] == [] and audit["optimizer_steps"] == [30] and audit["optimizers"] == 1
        assert audit["batches"] == [30] and audit["same_images"] is True
    assert np.allclose(seen["1"]["bias"], seen["0"]["bias"], rtol=1e-4, atol=1e-5)   # the same 30 steps
    assert sorted(seen["replaced"]) == ["fast.FusedAdam.step", "fast._eager_step", "train.Batches.next (as the loop "
                                        "calls it)", "train.binarize"]


# --- the device --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"),
                                                 (True, False, "cuda")])
def test_device_auto_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert runtime.pick_device("auto") == torch.device(expected)
    assert runtime.pick_device("cpu") == torch.device("cpu")


def test_device_auto_on_a_torch_without_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.backends, "mps")
    assert runtime.mps_available() is False
    assert runtime.pick_device("auto") == torch.device("cpu")


def test_asking_for_a_device_that_is_not_there_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device mps"):
        runtime.pick_device("mps")
    with pytest.raises(SystemExit, match="--device cuda"):
        runtime.pick_device("cuda")


def test_only_dynamos_own_disable_wrapper_around_the_original_counts_as_the_original():
    """torch.compile, once used, wraps torch.optim.adam._fused_adam in dynamo's disable wrapper: a
    correct submission that compiles a function keeps its training points; a look-alike does not."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("worker_for_dynamo", paths.PROJECT / "autograder" / "_worker.py")
    _worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_worker)
    import torch._dynamo

    def original(x):
        return x

    def other(x):
        return x + 1

    def look_alike(*args, **kwargs):
        return original(*args, **kwargs)
    look_alike._torchdynamo_orig_callable, look_alike._torchdynamo_disable = original, True
    assert _worker._unhooked(torch._dynamo.disable(original), original) is original
    assert _worker._unhooked(torch._dynamo.disable(other), original) is not original
    assert _worker._unhooked(look_alike, original) is look_alike
