"""The verdicts of the sample-quality checks (autograder/sample_quality.py), for any problem with a
training gate: what the model the gate scored generates, read by the grader's digit classifier and held
to the problem's floors. The model is the gate's (TrainingOutcome.state): nothing is trained again.

`judge_conditional` is check 6.2 of cvae/training, `judge_unconditional` check 8.2 of beta/training (the
beta-VAE's floors are the VAE's, as its band is); the CS236 VAE (`vae`) does not grade either."""
from .. import config, sample_quality
from .training import trained_result


def _trained(case, gate, number):
    """The gate's scored outcome, or the check fails saying why the run did not count."""
    try:
        return trained_result(case.submission, gate)
    except AssertionError as error:
        case.fail(f"No samples can be read: the training run did not count (see {number}). {error}")


def _gate_number(gate):
    return config.ALL_CHECKS[gate.family]["trained_nelbo"].number


def judge_conditional(case, gate):
    """100 samples conditioned on each digit d must be read as d at least as often as the floor."""
    number = _gate_number(gate)
    result = _trained(case, gate, number)
    report = sample_quality.cvae_report(result.state)
    result.samples = {"samples: lowest digit read as itself (%)": 100.0 * report["min_fraction"]}
    limits, source = sample_quality.floors(gate.problem)
    shares = ", ".join(f"{d}: {share:.0%}" for d, share in enumerate(report["fractions"]))
    summary = (f"After {result.iterations} iterations, {sample_quality.CVAE_SAMPLES_PER_DIGIT} samples of your trained "
               f"model conditioned on each digit d, read by the grader's digit classifier, are classified as d: "
               f"{shares} (lowest {report['min_fraction']:.0%}, digit {report['worst_digit']}).")
    if result.iterations < config.DEFAULT_ITERATIONS:
        print(summary + " (shortened run: the floor applies to full runs only)")
        return
    problems = sample_quality.judge_cvae_samples(report, limits)
    if problems:
        case.fail(f"{summary} {' '.join(problems)} The label must reach the decoder in training with each image's "
                  f"own label (check 5.5), or the decoder learns to ignore it; a NELBO far from the band (check "
                  f"{number}) also gives samples that are not digits.")
    print(summary + f" Every digit clears the {source} floor of {limits['min_fraction']:.1%}.")


def judge_unconditional(case, gate):
    """1,000 samples: enough digits at >= 3% each, read clearly enough (the mean top-class probability)."""
    number = _gate_number(gate)
    result = _trained(case, gate, number)
    report = sample_quality.vae_report(result.state, problem=gate.problem)
    result.samples = {"samples: mean top-class probability": float(report["mean_top_probability"])}
    limits, source = sample_quality.floors(gate.problem)
    summary = (f"After {result.iterations} iterations, {sample_quality.VAE_SAMPLES:,} samples of your trained model, "
               f"read by the grader's digit classifier: {report['digits_present']} of the 10 digits make up at least "
               f"{sample_quality.PRESENT_SHARE:.0%} of them, mean top-class probability "
               f"{report['mean_top_probability']:.3f}.")
    if result.iterations < config.DEFAULT_ITERATIONS:
        print(summary + " (shortened run: the floors apply to full runs only)")
        return
    problems = sample_quality.judge_vae_samples(report, limits)
    if problems:
        case.fail(f"{summary} {' '.join(problems)} A NELBO far from the band (check {number}) gives such samples.")
    print(summary + f" Both clear the {source} floors ({limits['digits_present']} digits, "
                    f"{limits['mean_top_probability']:.3f}).")
