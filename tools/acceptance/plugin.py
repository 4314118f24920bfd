"""The pytest plugin behind `hil acceptance`: `--testbed CONFIG` names the testbed, a test's
`@pytest.mark.needs(...)` the capabilities it needs (capabilities.py), and every outcome and
measured figure goes into the report (report.py).

    pytest -p tools.acceptance.plugin --testbed CONFIG tools/acceptance/suite

(`hil acceptance CONFIG` runs exactly that.) A test a testbed cannot serve is skipped with
the reason, and the report lists it: nothing is left out silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from hil.base.errors import HilError
from hil.config import HilConfig, load_config
from hil.testbeds import Testbed, kind_of, start_testbed
from tools.acceptance.capabilities import missing
from tools.acceptance.report import Outcome, SuiteReport
from tools.acceptance.windows import SETTLE_S, keep_up, wait_testbed_s

_REPORT = pytest.StashKey[SuiteReport]()
_CONFIG = pytest.StashKey[HilConfig]()
DETAIL_CHARS = 600
"""How much of a failure's message the report keeps (the rest is in pytest's output)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vbs-hil acceptance")
    group.addoption("--testbed", metavar="CONFIG", help="the testbed config to accept")
    group.addoption("--acceptance-report", metavar="DIR",
                    help="where report.md and its figures go (default: acceptance/<name>-<time>)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*capabilities): what the test needs of the "
                            "testbed (tools/acceptance/capabilities.py)")
    path = config.getoption("--testbed")
    if path is None:
        raise pytest.UsageError("the acceptance suite needs --testbed CONFIG (or run "
                                "`hil acceptance CONFIG`)")
    try:
        cfg = load_config(Path(path))
    except HilError as exc:
        raise pytest.UsageError(str(exc)) from exc
    out = config.getoption("--acceptance-report") or (
        Path("acceptance") / f"{cfg.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    report = SuiteReport(Path(path), Path(out))
    report.identity = {"config": path, "name": cfg.name, "clock": cfg.clock.mode,
                       "hosts": {n: f"{h.username}@{h.hostname}:{h.port}"
                                 for n, h in cfg.hosts.items()},
                       "meter": cfg.meter.resource or cfg.meter.kind}
    try:
        report.identity.update(kind_of(cfg).provenance(cfg))
    except HilError as exc:
        report.identity["provenance"] = f"not read: {exc}"
    config.stash[_CONFIG] = cfg
    config.stash[_REPORT] = report
    config.pluginmanager.register(_Outcomes(report), "vbs-hil-acceptance-outcomes")


@pytest.hookimpl(tryfirst=True)  # before any fixture: a skipped test brings nothing up
def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = tuple(name for mark in item.iter_markers("needs") for name in mark.args)
    reasons = missing(item.config.stash[_CONFIG], needs)
    if reasons:
        pytest.skip("; ".join(reasons))


class _Outcomes:
    """Registered for the session: each test's outcome into the report, and the report
    written at the end."""

    def __init__(self, report: SuiteReport) -> None:
        self.report = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """One outcome per test: its call's, or its setup's when it never ran (skipped, or
        a fixture failed)."""
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        detail = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            detail = report.longrepr[2].removeprefix("Skipped: ")
        elif report.failed:  # the assertion and its values, else the last line
            crash = getattr(report.longrepr, "reprcrash", None)
            detail = (crash.message if crash is not None
                      else (report.longreprtext.strip().splitlines() or [""])[-1])
            detail = " ".join(detail.split())[:DETAIL_CHARS]
        self.report.outcomes.append(Outcome(report.nodeid, report.outcome, report.duration,
                                            detail))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.report.write()
        session.config.get_terminal_writer().line(f"acceptance report: {path}")


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def testbed_config(pytestconfig: pytest.Config) -> HilConfig:
    """The config under test, validated."""
    return pytestconfig.stash[_CONFIG]


@pytest.fixture(scope="session")
def testbed_config_path(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.getoption("--testbed")).resolve()


class Recorder:
    """What a test measured, for the report: `table(title, rows)`, `figure(title, fig)`."""

    def __init__(self, report: SuiteReport, test: str) -> None:
        self._report, self._test = report, test

    def table(self, title: str, rows: list[dict[str, Any]]) -> None:
        self._report.measured_by(self._test).table(title, rows)

    def figure(self, title: str, figure: Figure) -> None:
        self._report.save_figure(self._test, title, figure)


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.config.stash[_REPORT], request.node.nodeid)


@pytest.fixture(scope="module")
def testbed(testbed_config: HilConfig, pytestconfig: pytest.Config,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """The testbed up, as a run brings it up (its logs in a temporary folder), its traffic
    on and settled, shared by the tests of a module; its identity goes into the report."""
    with start_testbed(testbed_config, tmp_path_factory.mktemp("testbed")) as bed:
        keep_up(bed)  # traffic on, as a run's first round
        bed.ran.set({})
        wait_testbed_s(testbed_config, SETTLE_S)
        vbs = bed.ran.ping().vbs
        pytestconfig.stash[_REPORT].identity.update(
            {"vbs": f"{vbs.name} {vbs.version}", "rtctl": f"v{vbs.protocol}"})
        idn = getattr(bed.meter, "idn", None)
        if idn:
            pytestconfig.stash[_REPORT].identity["meter_idn"] = idn
        yield bed
        bed.ran.reset()
