"""Who may read what: the grader's files locked away from the student users before any
student code runs, the data and the interpreter kept readable."""
import os
import stat
import subprocess
import sys
from pathlib import Path


def autograder_root():
    return Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))


def private_paths(root=None):
    """What students must not read or write: source (tests, solution, calibration), results, metadata."""
    root = Path(root) if root is not None else autograder_root()
    return [root / "source", root / "results", root / "submission_metadata.json"]


def _walk(path, skip=()):
    """path and everything under it, without following symlinks, pruning the paths in `skip`."""
    if path in skip:
        return
    yield path
    if path.is_dir() and not path.is_symlink():
        for directory, subdirs, files in os.walk(path):
            subdirs[:] = [name for name in subdirs if Path(directory) / name not in skip]
            for name in subdirs + files:
                yield Path(directory) / name


def _chmod(path, mode_of):
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode):
        return
    new = mode_of(stat.S_IMODE(info.st_mode), stat.S_ISDIR(info.st_mode))
    if new != stat.S_IMODE(info.st_mode):
        os.chmod(path, new)


def lock_down(private, readable=()):
    """Remove group/other access (and ownership by anyone but root) from `private` paths,
    recursively; then make `readable` paths readable by others (o+rX) and their ancestors
    searchable (o+x, which lets no one list them). Returns a list of what it did."""
    done = []
    readable = [Path(p).absolute() for p in readable]
    readable = [p for p in readable if not any(p != q and p.is_relative_to(q) for q in readable)]
    for top in map(Path, private):
        if not top.exists():
            continue
        for path in _walk(top.absolute(), skip=set(readable)):
            try:
                if os.lstat(path).st_uid != 0 and not path.is_symlink():
                    os.chown(path, 0, 0)
            except OSError:
                pass
            _chmod(path, lambda mode, is_dir: mode & ~0o077)
        done.append(f"go-rwx {top}")
    for top in map(Path, readable):
        if not top.exists():
            continue
        top = top.resolve()
        for ancestor in reversed(top.parents):
            _chmod(ancestor, lambda mode, is_dir: mode | 0o001)
        for path in _walk(top):
            _chmod(path, lambda mode, is_dir: mode | 0o004 | (0o001 if is_dir or mode & 0o100 else 0))
        done.append(f"o+rX {top}")
    return done


def interpreter_paths(python=None):
    """Directories an interpreter needs to read: its prefix, base prefix and site-packages."""
    python = python or sys.executable
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        import site
        paths = {sys.prefix, sys.base_prefix, *site.getsitepackages()}
    else:
        out = subprocess.run([python, "-I", "-c", "import sys, site; print('\\n'.join([sys.prefix, "
                              "sys.base_prefix, *site.getsitepackages()]))"], capture_output=True, text=True)
        paths = set(out.stdout.split("\n")) - {""}
    return sorted(paths)
