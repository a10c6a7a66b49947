"""`python pin_one_core.py CMD ARGS...`: run CMD pinned to one CPU (for machines without taskset)."""
import os
import sys

if __name__ == "__main__":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.execvp(sys.argv[1], sys.argv[1:])
