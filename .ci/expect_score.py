"""`python .ci/expect_score.py RESULTS.json full|zero`: exit 0 when the grading scored as
expected (full: every point of every test; zero: no point at all), else 1 with the tests
that disagree. Standard library only."""
import json
import sys


def main(path, want):
    with open(path, encoding="utf-8") as stream:
        results = json.load(stream)
    tests = results.get("tests", [])
    score = float(results.get("score", sum(t.get("score", 0) for t in tests)))
    total = sum(float(t.get("max_score", 0)) for t in tests)
    if want == "full":
        ok = total > 0 and score == total and all(float(t.get("score", 0)) == float(t.get("max_score", 0))
                                                  for t in tests)
        wrong = [t for t in tests if float(t.get("score", 0)) != float(t.get("max_score", 0))]
    else:
        ok = total > 0 and score == 0 and all(float(t.get("score", 0)) == 0 for t in tests)
        wrong = [t for t in tests if float(t.get("score", 0)) != 0]
    print(f"expect_score: {path}: {score:g} / {total:g}, expected {want}: {'ok' if ok else 'WRONG'}")
    if not ok:
        for test in wrong:
            output = " ".join(str(test.get("output", "")).split())[:400]
            print(f"  {test.get('name')}: {test.get('score')} / {test.get('max_score')}: {output}")
        if not tests:
            print("  " + " ".join(str(results.get("output", "")).split())[:800])
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("full", "zero"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
