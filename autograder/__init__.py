"""The grader (trusted side). Importing it fixes this process's heap policy (heap.py)."""
from . import heap

heap.return_large_blocks()
