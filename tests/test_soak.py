"""A CI-sized soak: the loop's memory and open files do not grow, and the recorder keeps up.
(`hil bench --soak` runs the 100 000-round version and prints the figures.)"""

from __future__ import annotations

import pytest
from testbed_yaml import write_config

from hil.soak import FD_GROWTH_BOUND, RSS_GROWTH_BOUND_MB, soak

pytestmark = pytest.mark.e2e


def test_a_soak_keeps_memory_and_open_files_flat_and_records_every_round(tmp_path):
    figures = {name: value for name, value, _ in soak(write_config(tmp_path), 2_000,
                                                      sample_every=500)}
    assert figures["soak_rounds"] == figures["soak_recorded_rounds"] == 2_000
    assert figures["soak_fds_end"] - figures["soak_fds_start"] <= FD_GROWTH_BOUND
    assert figures["soak_rss_mb_end"] - figures["soak_rss_mb_start"] <= RSS_GROWTH_BOUND_MB
