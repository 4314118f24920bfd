"""`hil check`: one line per check, every problem listed in one pass, exit 1 if any."""

import pytest
from testbed_yaml import write_config

from tools.cli import main

pytestmark = pytest.mark.e2e


def lines_of(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_the_shipped_emulated_testbed_is_ready(tmp_path, capsys, sshd):
    assert main(["check", str(write_config(tmp_path, sshd=sshd))]) == 0
    lines = lines_of(capsys)
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * (len(lines) - 1)
    assert any(line.startswith("ok    vbs: emulated-srsenb") for line in lines)
    assert lines[-1].endswith("ready")


def test_a_broken_testbed_gets_one_line_per_problem(tmp_path, capsys):
    config = write_config(tmp_path, vbs={
        "host": "bbu",
        "emulator": {"calibration": str(tmp_path / "missing.yaml"),
                     "scenario": {"name": "trace", "trace": str(tmp_path / "missing.csv")}}},
        hosts={"bbu": {"hostname": "127.0.0.1", "port": 1, "username": "nobody",
                       "use_agent": False, "key_path": str(tmp_path / "no-key")}})
    assert main(["check", str(config)]) == 1
    failures = {line.split()[1].rstrip(":"): line for line in lines_of(capsys)
                if line.startswith("FAIL")}
    assert set(failures) == {"files", "calibration", "scenario", "host", "testbed", "vbs"}
    assert "bbu" in failures["testbed"]  # the testbed lock lives on the unreachable host
    assert f"hosts.bbu.key_path {tmp_path / 'no-key'}" in failures["files"]
    assert "extends:" in failures["files"]
    assert "missing.yaml" in failures["calibration"]
    assert "missing.csv" in failures["scenario"]
    assert "bbu" in failures["host"]


def test_a_reachable_ssh_host_is_checked_ok(tmp_path, capsys, sshd):
    config = write_config(tmp_path, sshd=sshd)
    assert main(["check", str(config)]) == 0
    assert any(line.startswith("ok    host bbu:") and "Python 3" in line
               for line in lines_of(capsys))
