"""vbs-hil: the experiment: config, round engine, reward, recording, CLI."""

import os

# One OpenBLAS thread (numpy's) unless the operator says otherwise: the agents' linear
# algebra is small (BP-vRAN's per-round work is matrix-vector products over <= 1000 points),
# where threads give nothing; measured on 2 cores (1000-point budget): bpvran_round_ms_5k
# 1.48 ms with two threads, 1.38 ms with one; with the former 100-point GP, 14 ms and 4.3 ms.
# Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
