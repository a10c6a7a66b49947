"""python -m autograder assign | calibrate | calibrate-samples | classifier | grade | prepare | container | build | regrade | merge  (see README.md)."""
import argparse
import sys
from pathlib import Path

from . import paths
from .problems import PROBLEMS, ProblemSet, UnknownProblem, parse, served

PROBLEMS_HELP = (f"comma-separated problems among {', '.join(PROBLEMS)} (default: {','.join(served())}, "
                 "those this grader serves)")


def _problems(text):
    try:
        return parse(text)
    except UnknownProblem as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _problem(text):
    names = _problems(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError("one problem")
    return names[0]


def build_parser():
    """The command line: one subcommand per action (tests/test_readme.py holds the README to it)."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    assign = commands.add_parser("assign", help="regenerate assignment/ from solution/")
    assign.add_argument("--problems", type=_problems, default=None, metavar="P,Q", help=PROBLEMS_HELP)
    assign.add_argument("--out", type=Path, default=None,
                        help="(default: assignment/ for the CS236 VAE alone, else assignment-<problems>/)")

    calibrate = commands.add_parser("calibrate", help="train the reference N times; store the pass band")
    calibrate.add_argument("--problem", type=_problem, default="vae", help="the problem whose reference is "
                           f"trained, among {', '.join(PROBLEMS)} (default: vae)")
    calibrate.add_argument("--runs", type=int, default=20, help="number of seeds (default: 20)")
    calibrate.add_argument("--iterations", type=int, default=None,
                           help="(default: what the problem's gate trains: 20000, the MMD-VAE's 5000)")
    calibrate.add_argument("--first-seed", type=int, default=1000, help="(default: 1000)")
    calibrate.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="(default: cpu)")
    calibrate.add_argument("--out", type=Path, default=None,
                           help="(default: the problem's, autograder/calibration.json for vae)")
    calibrate.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each (default: 1)")
    calibrate.add_argument("--save-models", type=Path, default=None, metavar="DIR",
                           help="keep each run's state dict as DIR/seed<N>.pt")
    calibrate.add_argument("--models", type=Path, default=None, metavar="DIR",
                           help="evaluate the saved state dicts DIR/*.pt (trained for --iterations) instead of training")

    samples = commands.add_parser("calibrate-samples", help="the sample-quality floors from saved reference models "
                                  "(added to the problem's calibration file)")
    samples.add_argument("--models", type=Path, required=True, metavar="DIR",
                         help="the reference state dicts DIR/*.pt (trained for 20,000 iterations)")
    samples.add_argument("--problem", type=_problem, default="vae", help=f"among {', '.join(PROBLEMS)} (default: vae)")
    samples.add_argument("--out", type=Path, default=None,
                         help="(default: the problem's calibration file; only its \"sample_quality\" key changes)")

    classifier = commands.add_parser("classifier", help="train the grader's digit classifier on the MNIST "
                                                        "training images; print its test accuracy")
    classifier.add_argument("--out", type=Path, required=True, help="where to write its state dict "
                            "(autograder/digit_classifier.pt)")
    classifier.add_argument("--steps", type=int, default=None, help="stop after N batches (default: 4 epochs)")
    classifier.add_argument("--seed", type=int, default=0, help="(default: 0)")

    grade = commands.add_parser("grade", help="grade a submission folder exactly as Gradescope would")
    grade.add_argument("submission", type=Path, help="folder holding utils.py and vae.py (any depth)")
    grade.add_argument("--results", type=Path, required=True, help="where to write results.json")
    grade.add_argument("--iterations", type=int, default=None,
                       help="training iterations (default: 20000; fewer only for testing the grader)")
    grade.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="(default: cpu)")
    grade.add_argument("--python", default=None, help="interpreter for the sandbox (default: this one)")
    grade.add_argument("--checks", nargs="+", default=None, metavar="FUNCTION",
                       help="only the checks of these functions, as results.json tags them (default: all; e.g. "
                            "sample_gaussian kl_normal negative_elbo_bound training)")
    grade.add_argument("--problems", type=_problems, default=None, metavar="P,Q", help=PROBLEMS_HELP)

    commands.add_parser("prepare", help="fetch and verify MNIST; create the sandbox user (setup.sh's last step)")

    container = commands.add_parser("container", help="what run_autograder runs: grade ROOT/submission")
    container.add_argument("--root", type=Path, default=Path("/autograder"))
    container.add_argument("--iterations", type=int, default=None)
    container.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    build = commands.add_parser("build", help="the Gradescope zip (setup.sh and run_autograder at its root)")
    build.add_argument("--out", type=Path, default=Path("autograder.zip"))
    build.add_argument("--public", action="store_true",
                       help="the students' bundle instead: public checks without the solution")
    build.add_argument("--no-verify", action="store_true",
                       help="skip grading the solution (must be full) and the skeleton (must be 0) first")
    build.add_argument("--problems", type=_problems, default=None, metavar="P,Q", help=PROBLEMS_HELP)

    regrade = commands.add_parser("regrade", help="grade every submission of a Gradescope export again, locally; "
                                                  "grades.csv and a summary")
    regrade.add_argument("export", type=Path, help="the unzipped export: submission_metadata.yml and a folder per "
                                                   "submission")
    regrade.add_argument("--out", type=Path, required=True, help="folder of the grades (created; a run resumes in it)")
    regrade.add_argument("--jobs", type=int, default=None,
                         help="gradings at once (default: the CPUs of the quota, as many as fit in memory)")
    regrade.add_argument("--iterations", type=int, default=None,
                         help="training iterations (default: 20000; fewer only for testing the grader)")
    regrade.add_argument("--shard", default=None, metavar="K/N",
                         help="grade only the K-th of N disjoint slices (an array job); `merge` joins them")
    regrade.add_argument("--force", action="store_true",
                         help="grade again what this grader already graded (same files, iterations and device)")
    regrade.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                         help="wall-clock bound of one grading (default: Gradescope's recommended timeout for this grader's problems: 1200 for one, plus 720 per further one, 2400 at most)")
    regrade.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="(default: cpu)")
    regrade.add_argument("--no-progress", action="store_true", help="a line per submission instead of the bar")

    merge = commands.add_parser("merge", help="join the grades of regrade's shards")
    merge.add_argument("shards", type=Path, nargs="+", help="the shards' --out folders")
    merge.add_argument("--out", type=Path, required=True, help="folder of the joined grades")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "assign":
        from .skeleton import write_handout
        problem_set = ProblemSet(args.problems)
        out = args.out or (paths.ASSIGNMENT if problem_set.is_default else
                           paths.PROJECT / f"assignment-{'-'.join(problem_set.names)}")
        names = write_handout(paths.SOLUTION, out, problem_set)
        print(f"wrote {len(names)} files to {out}: {', '.join(names)}")
    elif args.command == "calibrate" and args.problem == "ae":     # its own runs and measures (ae_calibration.py)
        from . import ae_calibration
        out = args.out or PROBLEMS["ae"].calibration_path
        iterations = None if args.iterations == 20000 else args.iterations     # default: train_ae's own budget
        if args.models is not None:
            ae_calibration.calibrate_from_models(args.models, out, iterations)
            return 0
        if args.runs < 2:
            parser.error("--runs must be at least 2")
        ae_calibration.calibrate(args.runs, out, iterations, args.first_seed, args.jobs, args.save_models)
    elif args.command == "calibrate":
        if not any(family.rsplit("/", 1)[-1] == "training" for family in PROBLEMS[args.problem].families):
            parser.error(f"{args.problem} has no training gate: there is no band to calibrate")
        if args.iterations is None:                  # what the problem's gate trains
            from .checks.cvae_training import GATES
            from .config import DEFAULT_ITERATIONS
            args.iterations = next((gate.iterations for gate in GATES if gate.problem == args.problem), None) \
                or DEFAULT_ITERATIONS
        shared = PROBLEMS[args.problem].calibrated_as
        if shared and shared != args.problem and args.out is None:
            parser.error(f"{args.problem} uses the calibration of {shared} ({PROBLEMS[args.problem].calibration}): "
                         f"run `calibrate --problem {shared}`, or give --out to measure {args.problem} on its own")
        if args.models is not None:
            if args.save_models is not None:
                parser.error("--models evaluates saved models: --save-models does not apply")
            from .calibrate import calibrate_from_models
            calibrate_from_models(args.models, args.iterations, args.out or PROBLEMS[args.problem].calibration_path,
                                  problem=args.problem)
            return 0
        if args.runs < 2:
            parser.error("--runs must be at least 2")
        from .calibrate import calibrate as run_calibration
        run_calibration(args.runs, args.iterations, args.first_seed, args.device,
                        args.out or PROBLEMS[args.problem].calibration_path, jobs=args.jobs,
                        save_models=args.save_models, problem=args.problem)
    elif args.command == "calibrate-samples":
        from .sample_calibration import calibrate_samples
        calibrate_samples(args.models, args.problem, args.out or PROBLEMS[args.problem].calibration_path)
    elif args.command == "classifier":
        if args.steps is not None and args.steps < 1:
            parser.error("--steps must be at least 1")
        from .digit_training import main as train_classifier
        return train_classifier(args.out, args.steps, args.seed)
    elif args.command == "prepare":
        from .container import prepare
        prepare()
    elif args.command == "container":
        from .config import DEFAULT_ITERATIONS
        from .container import run
        run(args.root, args.iterations or DEFAULT_ITERATIONS, args.device)
    elif args.command == "build":
        from .build import build as run_build
        from .build import build_public
        problem_set = ProblemSet(args.problems)
        if args.public:
            return build_public(args.out, problem_set=problem_set)
        return run_build(args.out, verify_first=not args.no_verify, problem_set=problem_set)
    elif args.command == "regrade":
        from .regrade.commands import regrade as run_regrade
        return run_regrade(args)
    elif args.command == "merge":
        from .regrade.commands import merge as run_merge
        return run_merge(args)
    elif args.command == "grade":
        if not args.submission.is_dir():
            parser.error(f"{args.submission} is not a folder")
        from .config import DEFAULT_ITERATIONS
        from .grade import grade as run_grade
        device = args.device
        if device == "auto":
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        problem_set = ProblemSet(args.problems)
        known = {problem_set.tag(family) for family in problem_set.checks} | set(problem_set.checks)
        unknown = [name for name in args.checks or () if name not in known]
        if unknown:
            parser.error(f"--checks: no {', '.join(unknown)} among {', '.join(sorted(known))}")
        run_grade(args.submission, args.results, args.iterations or DEFAULT_ITERATIONS, device, args.python,
                  families=args.checks, problems=problem_set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
