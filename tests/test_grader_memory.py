"""What the grader keeps between requests and between families: records hold what the checks read, once.
(How much memory a grading takes is measured by bench/, not here.)"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from autograder import ae_evaluation, evaluation, forked, paths
from autograder.reference import data
from autograder.checks import remote
from autograder.checks.submission import release_memory

Z_DIM = 10


def _session(kept_phases=None):
    return remote.ConvSession(remote.ConvTrustedModel(Z_DIM), kept_phases)


def _decode(session, phase, z):
    session("phase", {"name": phase}, {})
    params, arrays = session("dec", {}, {"in0": z})
    return params["call"], arrays["out0"]


def test_answers_of_phases_not_kept_are_recorded_as_shapes_only():
    session = _session(kept_phases=("call0",))
    z = np.random.default_rng(0).normal(size=(3, Z_DIM)).astype(np.float32)
    first, answered0 = _decode(session, "call0", z)
    second, answered1 = _decode(session, "call1", z)
    kept, light = session.calls[first].outputs[0], session.calls[second].outputs[0]
    assert np.array_equal(kept, answered0) and kept.strides != (0,) * kept.ndim
    assert light.shape == answered1.shape and light.dtype == answered1.dtype
    assert light.strides == (0,) * light.ndim          # holds one element, whatever its shape
    assert np.array_equal(answered0, answered1)        # the child got the full answer in both phases


def test_a_backward_pass_in_a_phase_not_kept_gets_the_gradient_a_kept_one_gets():
    z = np.random.default_rng(1).normal(size=(2, Z_DIM)).astype(np.float32)
    grad = np.random.default_rng(2).normal(size=(2, 1, 28, 28)).astype(np.float32)
    answers = []
    for kept_phases in (None, ("call0",)):
        session = _session(kept_phases)
        call, _ = _decode(session, "call1", z)
        _, arrays = session("dec.backward", {"call": call}, {"g0": grad})
        answers.append(arrays["g0"])
    assert np.any(answers[0]) and np.array_equal(answers[0], answers[1])


def test_a_batch_sent_again_is_recorded_once_and_a_different_one_apart():
    session = _session()
    x = (np.random.default_rng(3).random((4, 784)) < 0.3).astype(np.float32)
    session("enc", {}, {"in0": x})
    session("enc", {}, {"in0": x.copy()})
    other = x.copy()
    other[0, 0] = -0.0 if other[0, 0] == 0 else 0.0    # equal under ==, other bytes: still recorded apart
    session("enc", {}, {"in0": other})
    first, again, changed = (call.inputs[0] for call in session.calls)
    assert again is first
    assert changed is not first and np.array_equal(changed.view(np.uint8), other.view(np.uint8))


def test_release_memory_lets_the_hidden_set_go_and_the_autoencoders_caches_once_a_problem_is_done(monkeypatch):
    monkeypatch.setitem(ae_evaluation._VALIDATION, "somewhere", np.zeros(3))
    evaluation.hidden_labels.cache_clear()
    monkeypatch.setattr(evaluation.ref_data, "load_mnist", lambda split, data_dir=None: (None, np.arange(10_000)))
    evaluation.hidden_labels("fake")
    assert evaluation.hidden_labels.cache_info().currsize == 1
    release_memory()
    assert evaluation.hidden_labels.cache_info().currsize == 0
    assert "somewhere" in ae_evaluation._VALIDATION          # the same problem's next family still uses them
    release_memory(problem_done=True)
    assert not ae_evaluation._VALIDATION


@pytest.mark.parametrize("phase", ["call0", "call3"])
def test_records_count_what_was_answered_whether_kept_or_not(phase):
    session = _session(kept_phases=("call0",))
    before = session.recorded_bytes
    _decode(session, phase, np.zeros((5, Z_DIM), np.float32))
    assert session.recorded_bytes - before == 5 * Z_DIM * 4 + 5 * 784 * 4


def test_the_reference_timing_runs_in_a_child_that_takes_what_it_imports_along():
    """The CVAE gate's reference timing (torch.optim.Adam imports torch._dynamo, ~70 MB) leaves the grader's
    modules as they were, and gives the timing itself."""
    code = """if True:
        import sys
        from autograder import forked
        from autograder.checks import cvae_training, training
        from autograder.training_images import TrainingImages
        gate = next(g for g in cvae_training.GATES if g.problem == "cvae")
        images = TrainingImages(sys.argv[1])
        before = set(sys.modules)
        seconds = forked.number_in_child(training.reference_step_cpu_seconds, images.rows(0, 500),
                                         labels=images.labels()[:500], gate=gate, steps=2)
        print(seconds, "torch._dynamo" in sys.modules, len(set(sys.modules) - before))
        """
    done = subprocess.run([sys.executable, "-c", code, str(data.ensure_mnist(fetch=False))], cwd=paths.PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seconds, dynamo, new_modules = done.stdout.split()
    assert 0 < float(seconds) < 5
    assert dynamo == "False" and new_modules == "0"


def test_a_failing_or_dying_child_is_an_error_of_the_grader():
    assert forked.number_in_child(_value, 2.5) == 2.5
    with pytest.raises(RuntimeError, match="failed in its child"):
        forked.number_in_child(_raises)
    with pytest.raises(RuntimeError, match="failed in its child"):
        forked.number_in_child(_killed)


def test_the_child_does_not_run_the_graders_signal_handlers():
    ran = []
    previous = signal.signal(signal.SIGTERM, lambda *args: ran.append(os.getpid()))
    try:
        with pytest.raises(RuntimeError, match="failed in its child"):
            forked.number_in_child(_terminated)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ran == []


def _raises():
    raise ValueError("the timing broke")


def _value(value):
    return value


def _killed():
    os.kill(os.getpid(), signal.SIGKILL)


def _terminated():
    os.kill(os.getpid(), signal.SIGTERM)
    return 1.0
