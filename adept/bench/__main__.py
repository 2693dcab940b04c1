"""``python -m adept.bench TASK_JSON``: the worker process of the local backend (one cell or
seed pack)."""

import sys

from adept.bench.backends import worker_main

raise SystemExit(worker_main(sys.argv[1:]))
