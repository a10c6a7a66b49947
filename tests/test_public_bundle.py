"""The students' bundle (`build --public`): the same checks, no solution, usable from its folder."""
import json
import os
import subprocess
import sys
import zipfile

from autograder import build, paths
from autograder.reference import data


def test_public_bundle_grades_without_the_solution(tmp_path):
    bundle = tmp_path / "public.zip"
    assert build.build_public(bundle, log=lambda m: None) == 0
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        handout = "".join(archive.read(n).decode() for n in names if n.startswith("solution/"))
        archive.extractall(tmp_path / "checks")
    assert "autograder/PUBLIC" in names and "autograder/calibration.json" not in names
    assert "solution/README.md" in names and "solution/HANDOUT.md" not in names      # the students' README
    assert "torch.sqrt(v) * eps" not in handout and "BEGIN SOLUTION" not in handout
    assert handout.count("raise NotImplementedError") == 3
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vae.py").write_text((paths.SOLUTION / "vae.py").read_text())
    (mine / "utils.py").write_text((paths.SOLUTION / "utils.py").read_text().replace(
        "z = m + torch.sqrt(v) * eps", "z = m + v * eps"))
    env = dict(os.environ, VAE_DATA_DIR=str(data.ensure_mnist(fetch=False)))
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(mine), "--results", str(tmp_path / "r.json"),
                          "--iterations", "30"], cwd=tmp_path / "checks", env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads((tmp_path / "r.json").read_text())
    variance = next(t for t in outcome["tests"] if t["number"] == "1.2")
    assert variance["score"] == 0 and "scale the noise by sqrt(v), not by v" in variance["output"]
    assert "1.2 0/2" in run.stdout
    kl = [t for t in outcome["tests"] if t["tags"] == ["kl_normal"]]
    assert all(t["score"] == t["max_score"] for t in kl)
    # no double penalty here either: the stand-ins of negative_elbo_bound are answered by oracle.py
    elbo = [t for t in outcome["tests"] if t["tags"] == ["negative_elbo_bound"]]
    assert elbo and all(t["score"] == t["max_score"] for t in elbo), [(t["number"], t.get("output")) for t in elbo]


def test_gradescope_zip_leaves_the_handout_documents_out():
    """The container needs code, calibration and data: neither HANDOUT.md nor a README goes in."""
    names = [name for _, name in build._members()]
    assert "solution/vae.py" in names and not any(name.endswith(".md") for name in names)
