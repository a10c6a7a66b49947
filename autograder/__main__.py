"""python -m autograder assign | build | grade | calibrate | check  (see README.md)."""
import argparse
import sys
from pathlib import Path

from . import paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("assign", help="regenerate assignment/ from solution/")

    calibrate = commands.add_parser("calibrate", help="train the reference N times; store the pass band")
    calibrate.add_argument("--runs", type=int, default=20, help="number of seeds (default: 20)")
    calibrate.add_argument("--iterations", type=int, default=20000, help="(default: 20000)")
    calibrate.add_argument("--first-seed", type=int, default=1000, help="(default: 1000)")
    calibrate.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="(default: cpu)")
    calibrate.add_argument("--out", type=Path, default=paths.CALIBRATION, help="(default: autograder/calibration.json)")

    args = parser.parse_args(argv)
    if args.command == "assign":
        from .skeleton import write_handout
        names = write_handout(paths.SOLUTION, paths.ASSIGNMENT)
        print(f"wrote {len(names)} files to {paths.ASSIGNMENT}: {', '.join(names)}")
    elif args.command == "calibrate":
        if args.runs < 2:
            parser.error("--runs must be at least 2")
        from .calibrate import calibrate as run_calibration
        run_calibration(args.runs, args.iterations, args.first_seed, args.device, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
