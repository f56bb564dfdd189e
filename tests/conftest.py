"""Settings shared by every test; nothing here imports torch or textual."""

import os

# The models under test are tiny: with several intra-op threads on a shared
# 2-core machine, OpenMP spin-waiting made a training step ~25x slower (24 ms
# of CPU instead of 1). Set before any test module imports torch; an explicit
# OMP_NUM_THREADS in the environment still wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
