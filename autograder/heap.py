"""The grader process's heap: a large block goes back to the system when it is freed.

glibc serves blocks above its mmap threshold (128 KB at first) as mappings of their own, returned
to the system on free, but raises that threshold to the size of each such block freed (up to 32 MB,
its "dynamic threshold"); from then on blocks of that size come from the heap, where the checks'
float64 copies of a sandbox's answers (2,500 x 784 doubles: 16 MB each) stay resident after use and
fragment it. Measured on the convolutional VAE's unit checks (2026-12-07, bench: README "Container
limits per problem set"): the grader peaked at 580 to 800 MB RSS with the dynamic threshold, about
300 MB less with a fixed one. Fixing it (mallopt M_MMAP_THRESHOLD) turns the adjustment off. Only
this process: the sandbox children, which train, keep glibc's default."""
import ctypes
import ctypes.util
import gc

M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 2 * 2**20


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def return_large_blocks():
    """Fix glibc's mmap threshold at THRESHOLD_BYTES -> whether it was set (False where libc is not glibc)."""
    try:
        return bool(_libc().mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def give_back_free_pages(collect=False):
    """Return the heap's free pages to the system (glibc malloc_trim): memory the checks freed below the mmap
    threshold stays in the heap, counted against the container, until trimmed. collect: a full garbage
    collection first (0.1 s in a fresh grader, more in a process that graded many submissions: not at every
    family). -> whether any pages went back (False where libc is not glibc)."""
    if collect:
        gc.collect()
    try:
        return bool(_libc().malloc_trim(0))
    except (OSError, AttributeError):
        return False
