"""Tests only: an interpreter the slot users can run, for machines where ours cannot be
(pyenv under /root). Imported by tests/test_sandbox.py and tests/runner.py."""
import os
import subprocess
import sys
from pathlib import Path


def build_student_python(destination, python=None):
    """Development machines only: a venv on a system interpreter that other users can run,
    seeing the site-packages of `python` (default: ours) through a .pth file. For when our
    interpreter lives where students cannot enter (pyenv under /root). Needs a system
    python3.X of the same X; returns the new interpreter's path, or None."""
    import site
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = next((p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if os.path.exists(p)), None)
    if base is None or python not in (None, sys.executable):
        return None
    destination = Path(destination)
    if not (destination / "bin" / "python").exists():
        subprocess.run([base, "-m", "venv", "--without-pip", str(destination)], check=True, capture_output=True)
    packages = destination / "lib" / version / "site-packages"
    (packages / "vae-shared.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return str(destination / "bin" / "python")
