"""Where a student user can leave files outside its work directory, and what it left there.

`writable_directories()` walks the filesystem once per process (skipping /proc and /sys,
and every directory a slot user cannot search) for every directory it can write: world-writable ones (/tmp, /var/tmp, /dev/shm,
/run/lock, ... found, not guessed) and those owned by a slot user or writable by its group.
As root with a mount namespace, the sandbox mounts a private, size-limited tmpfs on the
world-writable ones (`private_directories`: what the child needs inside them is bound back);
the others are emptied of everything the slot user owns after each sandbox and at the end
of grading, and what it holds there counts against its memory limit meanwhile.
"""
import errno
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

from . import users

_SKIP = ("/proc", "/sys")
_WRITABLE = None
_LOCK = threading.Lock()
ENTRY_BYTES = 1024            # what one file costs the machine beyond its data (inode, dentry)
MAX_ENTRIES = 100_000         # past this many files a sandbox is over any limit
MAX_PRIVATE_MOUNTS = 32


def shared_directories():
    """Directories the grader's own environment declares shared ($VAE_SANDBOX_SHARED, a
    os.pathsep-separated list; tests use it for a folder where detached processes leave
    their pids): visible to every sandbox, never covered, emptied or counted."""
    return [os.path.abspath(p) for p in os.environ.get("VAE_SANDBOX_SHARED", "").split(os.pathsep) if p]


def writable_directories():
    """Every directory a slot user can write to (absolute paths, sorted), but the shared ones;
    cached per process."""
    global _WRITABLE
    with _LOCK:
        if _WRITABLE is None:
            shared = [Path(p) for p in shared_directories()]
            _WRITABLE = tuple(sorted(d for d in _walk() if not any(Path(d).is_relative_to(p) for p in shared)))
        return _WRITABLE


def _walk():
    """Directories a slot user can write, descending only where it can search (x for it)."""
    identities = users.student_identities() if users.is_root() else []
    uids, gids = {i.uid for i in identities}, {i.gid for i in identities}

    def allows(info, bit_other, bit_user, bit_group):
        return bool(info.st_mode & bit_other or (info.st_uid in uids and info.st_mode & bit_user)
                    or (info.st_gid in gids and info.st_mode & bit_group))

    todo = ["/"]
    while todo:
        directory = todo.pop()
        try:
            info = os.lstat(directory)
            entries = list(os.scandir(directory))
        except OSError:
            continue
        if allows(info, stat.S_IWOTH, stat.S_IWUSR, stat.S_IWGRP):
            yield directory
        for entry in entries:
            if entry.path in _SKIP or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                child = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if allows(child, stat.S_IXOTH, stat.S_IXUSR, stat.S_IXGRP):
                todo.append(entry.path)


def private_directories(needed):
    """-> (directories a private tmpfs covers, directories to keep visible inside them).

    Every world-writable directory is covered unless it is, or lies inside, a path in
    `needed` (directories the child must still see: the interpreter's environment, the
    data); a needed directory inside a covered one is bound back over the tmpfs. None
    lies inside another one chosen."""
    needed = [Path(p) for p in needed if p]
    chosen = []
    for directory in writable_directories():
        path = Path(directory)
        try:
            world_writable = os.lstat(path).st_mode & stat.S_IWOTH
        except OSError:
            continue
        if not world_writable or path == Path("/") or path.is_relative_to("/dev/mqueue") \
                or any(path.is_relative_to(n) for n in needed) or any(path.is_relative_to(c) for c in chosen):
            continue
        chosen.append(path)
    chosen = chosen[:MAX_PRIVATE_MOUNTS]
    keep = sorted({n for n in needed if n.is_dir() and any(n.is_relative_to(c) for c in chosen)})
    keep = [k for k in keep if not any(k != other and k.is_relative_to(other) for other in keep)]
    return [str(p) for p in chosen], [str(k) for k in keep]


def _owned_entries(uid, directories):
    """(path, lstat) of the top-level entries of `directories` that `uid` owns."""
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if info.st_uid == uid:
                yield path, info


def remove_tree(path):
    """Delete the folder `path` and everything under it, however deep, never following a symlink (what wrote
    there must be dead). -> whether it is gone."""
    try:
        shutil.rmtree(path, ignore_errors=True)       # fd-based, does not follow symlinks
    except RecursionError:     # shutil.rmtree recurses once per level (Python < 3.13): a chain of folders
        pass                   # a thousand deep (hostile deep_tree_hoard) exhausts the stack
    if os.path.lexists(path):  # too deep for rmtree's stack or descriptors: GNU rm walks any depth
        try:
            subprocess.run(["rm", "-rf", "--one-file-system", "--", path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
        except (OSError, subprocess.SubprocessError):
            pass
    return not os.path.lexists(path)


def remove_owned(uid, directories):
    """Delete what `uid` owns at the top of `directories` (its processes must be dead). -> removed paths."""
    removed = []
    for path, info in _owned_entries(uid, directories):
        try:
            if not stat.S_ISDIR(info.st_mode):
                os.unlink(path)
            elif not remove_tree(path):
                continue
            removed.append(path)
        except OSError:
            pass
    return removed


def tree_bytes(path, budget=MAX_ENTRIES):
    """-> (bytes the files under `path` hold, entries seen); stops counting at `budget` entries. An entry
    whose path is too long to name (folders nested past PATH_MAX: hostile deep_tree_hoard) counts as
    `budget` entries: what lies below it cannot be counted by path, and no honest program nests so deep."""
    total, seen, todo = 0, 0, [path]
    while todo and seen < budget:
        current = todo.pop()
        try:
            info = os.lstat(current)
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                return total, budget
            continue
        seen += 1
        total += info.st_blocks * 512 + ENTRY_BYTES
        if stat.S_ISDIR(info.st_mode):
            try:
                todo += [os.path.join(current, name) for name in os.listdir(current)]
            except OSError as error:
                if error.errno == errno.ENAMETOOLONG:
                    return total, budget
    return total, seen


def _unlinked_handles(pid):
    """Paths under /proc/PID that reach the files process `pid` holds with no name left: its descriptors
    and its mappings (a file mapped shared, unlinked and closed is held by the mapping alone)."""
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            if os.readlink(path).endswith(" (deleted)"):
                yield path
        except OSError:
            continue
    try:
        with open(f"/proc/{pid}/maps") as maps:
            ranges = {line.split(None, 1)[0] for line in maps if line.rstrip().endswith(" (deleted)")}
    except OSError:
        return
    for mapped in ranges:
        yield f"/proc/{pid}/map_files/{mapped}"


def unlinked_open_bytes(pids, counted_devices=()):
    """-> bytes of the regular files that the processes `pids` hold open or mapped but that no folder lists
    any more (unlinked: their blocks stay until the last descriptor or mapping goes, and no walk of a folder
    finds them; hostile unlinked_files_hoard, mapped_files_hoard), each file once; but those on
    `counted_devices` (file systems whose use is counted whole: the private tmpfs)."""
    skipped, seen, total = set(counted_devices), set(), 0
    for pid in pids:
        for path in _unlinked_handles(pid):
            try:
                info = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and info.st_dev not in skipped \
                    and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def bytes_owned(uid, directories, budget=MAX_ENTRIES):
    """-> (bytes, entries) of everything `uid` owns at the top of `directories`, and under it."""
    total = seen = 0
    for path, _ in _owned_entries(uid, directories):
        size, count = tree_bytes(path, budget - seen)
        total, seen = total + size, seen + count
        if seen >= budget:
            break
    return total, seen


def devices(root, directories):
    """The device numbers of `directories` as seen from `root` (/proc/PID/root)."""
    found = set()
    for directory in directories:
        try:
            found.add(os.stat(os.path.join(root, directory.lstrip("/"))).st_dev)
        except OSError:
            continue
    return found


def used_bytes(root, directories):
    """Bytes in use on the file systems mounted at `directories` as seen from `root`
    (/proc/PID/root: the mount namespace of that process)."""
    total = 0
    for directory in directories:
        try:
            info = os.statvfs(os.path.join(root, directory.lstrip("/")))
        except OSError:
            continue
        total += (info.f_blocks - info.f_bfree) * info.f_frsize + (info.f_files - info.f_ffree) * ENTRY_BYTES
    return total
