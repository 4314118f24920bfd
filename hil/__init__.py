"""vbs-hil: the experiment: config, round engine, reward, recording, CLI."""

import os

# One OpenBLAS thread (numpy's) unless the operator says otherwise: the agents' linear
# algebra is small (BP-vRAN's GP holds <= 100 points), where threads cost more than they
# give; measured on 2 cores: bpvran_round_ms_5k 14 ms with the default threads, 4.3 ms with
# one. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
