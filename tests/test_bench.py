"""`hil bench` keeps printing the figures the project promises (values are not judged here:
speed is measured by the benchmark, never asserted in tests)."""

import math

import pytest
from testbed_yaml import write_config

from tools.cli import main

pytestmark = pytest.mark.e2e

PROMISED = {
    "bsvbs_select_update_us": "us", "bsvbs_select_update_us_1e6": "us",
    "bpvran_round_ms_1k": "ms", "bpvran_round_ms_5k": "ms",
    "replay_agent_rounds_per_s": "rounds/s",
    "replay_jobs_per_s_local_2": "jobs/s", "replay_jobs_per_s_dask_local_2": "jobs/s",
    "control_rtt_ms_p50": "ms", "control_rtt_ms_p99": "ms",
    "emulated_rounds_per_s": "rounds/s", "emulated_rounds_per_s_served": "rounds/s",
    "accelerated_rounds_per_s": "rounds/s",
    "round_ms_agent": "ms", "round_ms_control": "ms",
    "round_ms_meter": "ms", "round_ms_record": "ms",
    "controller_overhead_ms_p50": "ms", "controller_overhead_ms_p99": "ms",
    "meter_healthy_poll1s_valid_share": "1", "meter_faulty_valid_share": "1",
    "meter_faulty_integrator_valid_share": "1",
}


def test_bench_prints_every_promised_figure_as_name_value_unit(tmp_path, capsys, sshd):
    assert main(["bench", str(write_config(tmp_path, sshd=sshd)), "--quick"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    figures = {name: (float(value), unit) for name, value, unit in lines}
    for name, unit in PROMISED.items():
        value, printed_unit = figures[name]
        assert printed_unit == unit and math.isfinite(value) and value > 0
