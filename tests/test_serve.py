"""`hil serve`: the live view beside a run, read-only. Its counters never go back and end
equal to what the run recorded; its rows API hands out every row exactly once, across
journal compactions and a resume; bad requests get clear errors; nothing secret is served."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from round_rows import make_row
from testbed_yaml import REPO, write_config

from hil.journal import RoundRecorder
from hil.recorder import RunDirectory, read_rounds
from hil.serve import LiveServer

COUNTERS = ("hil_rounds", "hil_energy_joules", "hil_dl_bits", "hil_ul_bits",
            "hil_cap_violations", "hil_invalid_rounds")


def get(server: LiveServer, path: str, token: str | None = None) -> tuple[int, bytes]:
    host, port = server.httpd.server_address[:2]
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def counters(server: LiveServer) -> dict[tuple, float]:
    status, body = get(server, "/metrics")
    assert status == 200
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name in COUNTERS:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def page(server: LiveServer, run: str, since: int) -> dict:
    status, body = get(server, f"/api/rounds?run={run}&since={since}&limit=50")
    assert status == 200, body
    return json.loads(body)


@pytest.mark.e2e
def test_a_live_run_is_followed_row_by_row_across_compactions_and_a_resume(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    config = write_config(tmp_path, rounds=300, **{"clock.speedup": 100.0,
                                                   "recording.segment_rows": 64})
    server = LiveServer([runs], port=0).start()
    try:
        rows: list[dict] = []
        last: dict[tuple, float] = {}

        def follow_while(process: subprocess.Popen) -> None:
            nonlocal last
            while True:
                done = process.poll() is not None
                now = counters(server)
                assert all(now.get(key, 0.0) >= value for key, value in last.items()), \
                    "a counter went back"
                last = now
                for run in json.loads(get(server, "/api/runs")[1])["runs"]:
                    while True:
                        reply = page(server, run["run"], len(rows))
                        rows.extend(reply["rows"])
                        if not reply["rows"]:
                            break
                if done:
                    return
                time.sleep(0.05)

        hil = [sys.executable, "-m", "tools.cli", "run"]
        follow_while(subprocess.Popen([*hil, str(config)], cwd=REPO))
        (run_dir,) = runs.iterdir()
        follow_while(subprocess.Popen([*hil, "--resume", str(run_dir), "--rounds", "450"],
                                      cwd=REPO))
        deadline = time.monotonic() + 10
        while len(rows) < 450 and time.monotonic() < deadline:  # the last refresh
            time.sleep(0.1)
            rows.extend(page(server, run_dir.name, len(rows))["rows"])

        recorded = read_rounds(run_dir)
        assert [row["round"] for row in rows] == list(range(450)) == recorded["round"].tolist()
        assert [row["power_w"] for row in rows] == recorded["power_w"].tolist()
        assert list(run_dir.glob("rounds.*-*.parquet")) == []  # closed: merged into one file
        final = counters(server)
        labels = next(key[1] for key in final if key[0] == "hil_rounds_total")
        assert final[("hil_rounds_total", labels)] == 450
        assert final[("hil_energy_joules_total", labels)] == pytest.approx(
            recorded["energy_j"].sum(), rel=1e-9)
        assert final[("hil_dl_bits_total", labels)] == recorded["dl_bits"].sum()
        agent = json.loads(get(server, f"/api/agent?run={run_dir.name}")[1])["agent"]
        assert agent["round"] == 450 and agent["gamma"] > 0
        assert sum(map(sum, agent["grid"])) == pytest.approx(1.0)
    finally:
        server.stop()


@pytest.fixture
def served_run(tmp_path):
    run_dir = RunDirectory.create(tmp_path / "runs", "run-a")
    run_dir.write_meta({"config": {"name": "bench-1", "hosts": {
        "bbu": {"key_path": "/secret/id_ed25519", "hostname": "10.0.0.7"}}}, "agent": "bsvbs"})
    with RoundRecorder(run_dir) as recorder:
        for i in range(5):
            recorder.append({**make_row(i), "valid": bool(i % 2), "invalid_reason": None if i % 2
                             else f"measure: power meter TCPIP0::10.0.0.{i}::23::SOCKET: {i} % "
                             "covered"})
    server = LiveServer([tmp_path / "runs"], port=0).start()
    yield server, run_dir
    server.stop()


def test_bad_requests_get_clear_errors_and_the_server_stays_up(served_run):
    server, run_dir = served_run
    status, body = get(server, "/api/rounds?run=nope&since=0")
    assert status == 404 and b"unknown run 'nope'; followed: run-a" in body
    for since in ("-1", "abc"):
        status, body = get(server, f"/api/rounds?run=run-a&since={since}")
        assert status == 400 and b"since must be a whole number >= 0" in body
    assert get(server, "/nowhere")[0] == 404
    for path in run_dir.path.iterdir():
        path.unlink()
    run_dir.path.rmdir()
    time.sleep(1.0)  # a refresh finds it gone
    status, body = get(server, "/api/runs")
    assert status == 200 and b"not a directory" in body
    assert get(server, "/metrics")[0] == 200


def test_invalid_rounds_are_counted_by_reason_without_their_particulars(served_run):
    server, _ = served_run
    found = counters(server)
    reasons = {dict(labels)["reason"]: value for (name, labels), value in found.items()
               if name == "hil_invalid_rounds_total"}
    assert reasons == {"measure": 3.0}


def test_nothing_secret_is_served(served_run):
    server, _ = served_run
    for path in ("/api/runs", "/metrics", "/api/rounds?run=run-a&since=0"):
        body = get(server, path)[1]
        assert b"/secret/id_ed25519" not in body and b"10.0.0.7" not in body


def test_off_loopback_every_request_needs_the_token(tmp_path):
    (tmp_path / "runs").mkdir()
    server = LiveServer([tmp_path / "runs"], host="0.0.0.0", port=0).start()
    try:
        assert server.token and f"token={server.token}" in server.url
        status, body = get(server, "/metrics")
        assert status == 401 and b"token is required" in body
        assert get(server, "/metrics", token="wrong")[0] == 401
        assert get(server, "/metrics", token=server.token)[0] == 200
        assert get(server, f"/api/runs?token={server.token}")[0] == 200
    finally:
        server.stop()


def test_a_missing_path_or_a_taken_port_is_refused_naming_it(tmp_path):
    from hil.serve import ServeError

    with pytest.raises(ServeError, match="no such path"):
        LiveServer([tmp_path / "nope"])
    (tmp_path / "runs").mkdir()
    first = LiveServer([tmp_path / "runs"], port=0)
    try:
        with pytest.raises(ServeError, match="cannot listen on 127.0.0.1:"):
            LiveServer([tmp_path / "runs"], port=first.httpd.server_address[1])
    finally:
        first.httpd.server_close()
        first.runs.stop()


def test_rows_pages_hold_each_row_once(served_run):
    server, _ = served_run
    seen, since = [], 0
    while True:
        status, body = get(server, f"/api/rounds?run=run-a&since={since}&limit=2")
        reply = json.loads(body)
        if not reply["rows"]:
            break
        seen.extend(row["round"] for row in reply["rows"])
        since = reply["next"]
    assert seen == list(range(5))


def test_the_page_draws_every_row_the_api_has(served_run, tmp_path):
    """In a real headless browser (Debian's chromium, driven by selenium): the page loads,
    lists the run, and its charts hold one point per row; the screenshot is kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, _ = served_run
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1000,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(server.url)
        section = WebDriverWait(driver, 20).until(
            lambda d: d.find_element(By.CSS_SELECTOR, 'section.run[data-run="run-a"]'))
        total = json.loads(get(server, "/api/runs")[1])["runs"][0]["rows"]
        assert int(section.get_attribute("data-rows")) == total == 5
        for line in section.find_elements(By.CSS_SELECTOR, 'polyline[data-column="power_w"]'):
            assert len(line.get_attribute("points").split()) == total
        assert "measure" in section.find_element(By.CSS_SELECTOR, "table.invalid").text
        assert "run-a" in driver.find_element(By.ID, "runs").text
        driver.save_screenshot(str(tmp_path / "hil-serve-page.png"))
    finally:
        driver.quit()
    assert (tmp_path / "hil-serve-page.png").stat().st_size > 0


@pytest.mark.e2e
def test_hil_run_serve_prints_the_live_view_and_a_taken_port_does_not_stop_the_run(
        tmp_path, capsys):
    import socket

    from drivers.emulated.sshd import free_port
    from tools.cli import main

    config = write_config(tmp_path, rounds=50, **{"clock.speedup": 200.0})
    port = free_port()
    assert main(["run", str(config), "--serve", f"127.0.0.1:{port}"]) == 0
    assert f"live view: http://127.0.0.1:{port}/" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert main(["run", str(config), "--serve", f"127.0.0.1:{busy}"]) == 0
    said = capsys.readouterr().err  # the console writes to stderr
    assert "no live view: hil serve on" in said and "cannot listen" in said


def test_every_grafana_query_names_a_metric_hil_serve_exports(served_run):
    """tools/grafana/dashboards/vbs-hil.json, provisioned from the repo, graphs only what
    /metrics serves (a renamed metric would leave an empty panel)."""
    server, _ = served_run
    exported = set()
    for family in text_string_to_metric_families(get(server, "/metrics")[1].decode()):
        exported.add(family.name + ("_total" if family.type == "counter" else ""))
    dashboard = json.loads((REPO / "tools/grafana/dashboards/vbs-hil.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries.append(dashboard["templating"]["list"][0]["query"]["query"])
    named = {name for query in queries for name in re.findall(r"\bhil_[a-z_]+", query)}
    assert named and named <= exported, named - exported
    assert {"hil_exploration_gamma", "hil_policy_probability"} <= exported  # even before a
    # checkpoint: the families are declared, their samples come with it


def test_a_dataset_sweep_is_followed_by_its_cells(tmp_path):
    """A `hil collect` folder records `cells`, not `rounds`, and its run.json comes first."""
    import pyarrow as pa
    from round_rows import START_UTC

    from tools.collect.schema import CELL_SCHEMA

    def cell(i: int) -> dict:
        values = {pa.types.is_string: f"c0-p{i}-r0", pa.types.is_integer: i,
                  pa.types.is_floating: 1.0, pa.types.is_boolean: False,
                  pa.types.is_timestamp: START_UTC}
        return {f.name: next(v for is_type, v in values.items() if is_type(f.type))
                for f in CELL_SCHEMA if not f.nullable}

    sweep = RunDirectory(tmp_path / "sweep", table="cells")
    sweep.write_meta({"kind": "vbs-hil sweep", "config": {"name": "lab-1"}})
    server = LiveServer([sweep.path], port=0).start()
    try:
        with RoundRecorder(sweep, CELL_SCHEMA) as recorder:
            for i in range(3):
                recorder.append(cell(i))
        time.sleep(1.5)  # refreshes find the table that appeared after run.json
        (described,) = json.loads(get(server, "/api/runs")[1])["runs"]
        assert described["table"] == "cells" and described["rows"] == 3
        reply = page(server, "sweep", 0)
        assert [row["cell_id"] for row in reply["rows"]] == ["c0-p0-r0", "c0-p1-r0", "c0-p2-r0"]
    finally:
        server.stop()
