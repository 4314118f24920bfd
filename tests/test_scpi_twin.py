"""The SCPI twin answers like a GPM-8213, and the real driver survives its faults over TCP.

The first tests talk to the twin's `answer` directly, with a source whose readings the test
scripts: expected values come from the twin's specification (230 V, 50 Hz, power factor
0.6) and the real unit's transcript, not from the twin's code. The others run the real
driver, pyvisa with the pyvisa-py backend over a ``TCPIP0::127.0.0.1::port::SOCKET``
resource, against the twin: readings must match the source, and after each injected fault
the driver must reconnect and measure again, without raising anywhere but in the `stop()`
of a window that got no valid reading.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prerequisites import missing
from test_gpm8213 import HEADER_REAL, SETUP_REAL
from waiting import wait_until

from drivers.power.gpm8213 import Gpm8213Meter
from drivers.power.gpm8213_scpi import parse_values
from drivers.power.scpi_twin import Fault, ScpiMeterTwin, nr3
from hil.base.errors import MeterError


class ScriptedSource:
    """A PowerSource whose readings (mean W, energy J, TTIs) the test lists in advance."""

    def __init__(self, *readings: tuple[float, float, int]) -> None:
        self.readings = list(readings)

    def read_power(self) -> tuple[float, float, int]:
        return self.readings.pop(0) if self.readings else (math.nan, 0.0, 0)


class SteadySource:
    """A load drawing `power_w` in real time; `energy_factor` skews the energy it reports.

    With energy_factor != 1 the mean power and the energy disagree on purpose, so a test
    can tell which of the two a meter reading came from.
    """

    def __init__(self, power_w: float, energy_factor: float = 1.0) -> None:
        self.power_w = power_w
        self.energy_factor = energy_factor
        self._lock = threading.Lock()
        self._last_s = time.monotonic()

    def read_power(self) -> tuple[float, float, int]:
        with self._lock:
            ttis = int((time.monotonic() - self._last_s) * 1000)
            self._last_s += ttis * 1e-3
            if ttis == 0:
                return math.nan, 0.0, 0
            return self.power_w, self.power_w * self.energy_factor * ttis * 1e-3, ttis


def configured(twin: ScpiMeterTwin, *items: str) -> None:
    twin.answer(f":NUMERIC:NORMAL:NUMBER {len(items)}")
    for k, item in enumerate(items, start=1):
        twin.answer(f":NUMERIC:NORMAL:ITEM{k} {item}")


def value(twin: ScpiMeterTwin, count: int) -> list[float]:
    reply = twin.answer(":NUMERIC:NORMAL:VALUE?")
    assert reply is not None
    return parse_values(reply, count)


@pytest.fixture
def make_twin() -> Iterator[Callable[..., ScpiMeterTwin]]:
    twins: list[ScpiMeterTwin] = []

    def make(source: Any, **kwargs: Any) -> ScpiMeterTwin:
        twins.append(ScpiMeterTwin(source, **kwargs))
        return twins[-1]

    yield make
    for twin in twins:
        twin.close()


# ---------------------------------------------------------------------------- the twin alone
def test_twin_identifies_as_a_gpm8213(make_twin):
    assert make_twin(ScriptedSource()).answer("*IDN?") == "GWInstek,GPM-8213,TWIN0001,V1.05"


def test_twin_accepts_the_real_setup_and_names_the_items_like_the_real_unit(make_twin):
    twin = make_twin(ScriptedSource())
    replies = [(command, twin.answer(command)) for command, _ in SETUP_REAL[1:]]
    assert replies[:-1] == [(command, None) for command, _ in SETUP_REAL[1:-1]]
    assert replies[-1][1] == HEADER_REAL
    assert twin.answer(":SYSTEM:ERROR?") == '0,"No error"'


def test_twin_values_follow_the_source_at_230_v_and_power_factor_0_6(make_twin):
    twin = make_twin(ScriptedSource((18.0, 3.6, 200)))
    configured(twin, "U", "I", "P", "S", "FU", "LAMBDA", "Q", "FI")
    u, i, p, s, fu, pf, q, fi = value(twin, 8)

    assert (u, p, fu, pf) == (230.0, 18.0, 50.0, 0.6)
    assert s == pytest.approx(18.0 / 0.6, rel=1e-4)  # 30 VA
    assert i == pytest.approx(30.0 / 230.0, rel=1e-4)
    assert q == pytest.approx(math.sqrt(30.0**2 - 18.0**2), rel=1e-4)  # 24 var
    assert math.isnan(fi)


def test_twin_repeats_its_last_power_when_no_time_has_passed(make_twin):
    twin = make_twin(ScriptedSource((18.0, 3.6, 200), (math.nan, 0.0, 0), (9.0, 0.9, 100)))
    configured(twin, "P")
    assert [value(twin, 1) for _ in range(3)] == [[18.0], [18.0], [9.0]]


def test_twin_reports_nan_power_before_its_first_reading(make_twin):
    twin = make_twin(ScriptedSource())
    configured(twin, "U", "P")
    u, p = value(twin, 2)
    assert u == 230.0
    assert math.isnan(p)


def test_twin_accepts_short_forms_in_any_case(make_twin):
    twin = make_twin(ScriptedSource((5.0, 0.5, 100)))
    assert twin.answer(":num:norm:numb 2") is None
    assert twin.answer("NUM:NORM:ITEM1 p") is None
    assert twin.answer(":NUMeric:NORMal:ITEM2 fu") is None
    assert twin.answer(":NUM:NORM:HEAD?") == "P,fU"
    assert twin.answer(":num:norm:val?") == "5.0000E+00,50.000E+00"


def test_twin_answers_an_unknown_query_with_an_scpi_error(make_twin):
    assert make_twin(ScriptedSource()).answer(":MEASure:POWer?") == '-113,"Undefined header"'


def test_twin_queues_errors_of_commands_without_replies(make_twin):
    twin = make_twin(ScriptedSource())
    assert twin.answer(":BOGUS:COMMAND 1") is None
    assert twin.answer(":NUMERIC:NORMAL:ITEM1 VOLTS") is None
    assert twin.answer(":NUMERIC:NORMAL:NUMBER 0") is None
    assert [twin.answer(":SYST:ERR?") for _ in range(4)] == [
        '-113,"Undefined header"', '-224,"Illegal parameter value"',
        '-224,"Illegal parameter value"', '0,"No error"']
    assert twin.answer(":NUMERIC:NORMAL:HEADER?") == HEADER_REAL  # nothing changed


def test_twin_integrates_energy_and_time_only_while_started(make_twin):
    twin = make_twin(ScriptedSource(
        (10.0, 36.0, 100),     # read by the first value query, before STARt
        (10.0, 72.0, 200),     # taken by STARt: before the integration, not counted
        (12.0, 3600.0, 1000),  # 1 Wh in 1 s
        (12.0, 7200.0, 2000),  # 2 Wh in 2 s
        (12.0, 999.0, 500),    # taken by STOP: counted up to the stop
        (12.0, 3600.0, 1000),  # after STOP: not counted
    ))
    configured(twin, "P", "WH", "TIME")
    assert value(twin, 3)[1:] == [0.0, 0.0]
    for command in (":INTEGrate:MODE MANual", ":INTEGrate:FUNCtion WATT", ":INTEGrate:STARt"):
        assert twin.answer(command) is None
    assert value(twin, 3)[1:] == [1.0, 1.0]
    assert value(twin, 3)[1:] == [3.0, 3.0]
    assert twin.answer(":INTEGrate:STOP") is None
    assert value(twin, 3)[1:] == [pytest.approx(3.0 + 999.0 / 3600.0, rel=1e-4), 3.5]
    assert twin.answer(":INTEG:RES") is None
    assert value(twin, 3)[1:] == [0.0, 0.0]


@pytest.mark.parametrize(("number", "printed"), [
    (127.58, "127.58E+00"), (0.24002, "240.02E-03"), (17.688, "17.688E+00"),
    (30.622, "30.622E+00"), (59.993, "59.993E+00"), (24.997, "24.997E+00"),
    (999.996, "1.0000E+03"), (0.0, "0.0000E+00"), (math.nan, "NAN")])
def test_numbers_print_like_the_real_units_nr3(number, printed):
    assert nr3(number) == printed


# ---------------------------------------------------------------------------- driver over TCP
POLL_S = 0.02
TIMEOUT_S = 0.2


@pytest.fixture
def open_meter() -> Iterator[Callable[..., Gpm8213Meter]]:
    meters: list[Gpm8213Meter] = []

    def make(resource: str, **kwargs: Any) -> Gpm8213Meter:
        kwargs = {"poll_s": POLL_S, "timeout_s": TIMEOUT_S, **kwargs}
        meters.append(Gpm8213Meter(resource, **kwargs))
        return meters[-1]

    yield make
    for meter in meters:
        meter.close()


def after_polls(meter: Gpm8213Meter, count: int) -> None:
    polled = meter.stats().polls
    wait_until(lambda: meter.stats().polls >= polled + count, f"{count} more polls", poll_s=0.002)


def measure(meter: Gpm8213Meter, polls: int = 3):
    meter.start()
    after_polls(meter, polls)
    return meter.stop()


def test_driver_over_pyvisa_py_reads_the_sources_power(make_twin, open_meter):
    source = SteadySource(12.5)
    twin = make_twin(source).start()
    meter = open_meter(twin.resource)

    first = measure(meter)
    source.power_w = 20.0
    after_polls(meter, 2)  # the change has reached the readings
    second = measure(meter)

    assert first.power_w == pytest.approx(12.5)
    assert first.samples >= 2  # the first reading began before the window
    assert first.energy_j == pytest.approx(12.5 * first.duration_s)
    assert second.power_w == pytest.approx(20.0)
    assert meter.stats().errors == {}


def test_driver_takes_the_window_power_from_the_integrator_when_asked(make_twin, open_meter):
    # Mean power 10 W, but energy reported as 12 W: the integrator path must give 12 W.
    twin = make_twin(SteadySource(10.0, energy_factor=1.2)).start()
    polled = open_meter(twin.resource)
    assert measure(polled).power_w == pytest.approx(10.0)
    polled.close()

    integrating = open_meter(twin.resource, use_integrator=True)
    after_polls(integrating, 1)  # the integrator needs a reading before the window too
    reading = measure(integrating)

    assert integrating.stats().integrator
    assert reading.power_w == pytest.approx(12.0, rel=1e-3)


@pytest.mark.parametrize(("fault", "error_kind"), [
    (Fault.DELAY, "timeout"),
    (Fault.GARBAGE, "garbage"),
    (Fault.DROP, "dropped"),  # noticed when the connection closes, not after the timeout
])
def test_after_a_fault_the_driver_reconnects_and_measures_again(make_twin, open_meter, fault,
                                                                error_kind):
    twin = make_twin(SteadySource(12.5), fault_delay_s=2 * TIMEOUT_S).start()
    meter = open_meter(twin.resource, min_coverage=0.0)
    after_polls(meter, 1)

    meter.start()
    twin.inject(fault)
    wait_until(lambda: meter.stats().connects == 2, "a reconnect", poll_s=0.002)
    after_polls(meter, 2)
    during = meter.stop()  # the fault cost the time it stood for; the rest is measured
    after = measure(meter)

    assert meter.stats().errors == {error_kind: 1}
    assert during.power_w == pytest.approx(12.5)
    assert after.power_w == pytest.approx(12.5)


def test_nan_readings_fail_only_the_window_they_fill(make_twin, open_meter):
    twin = make_twin(SteadySource(12.5)).start()
    meter = open_meter(twin.resource)

    twin.inject(Fault.NAN)  # one NAN poll: the window around it is still valid
    mixed = measure(meter, polls=4)
    twin.inject(Fault.NAN, times=10**6)
    after_polls(meter, 1)
    meter.start()
    after_polls(meter, 3)
    with pytest.raises(MeterError, match="valid readings cover 0%"):
        meter.stop()
    twin.clear_faults()
    after_polls(meter, 1)
    recovered = measure(meter)

    assert mixed.power_w == pytest.approx(12.5)
    assert recovered.power_w == pytest.approx(12.5)
    stats = meter.stats()
    assert stats.nan_samples >= 4
    assert stats.errors == {}
    assert stats.connects == 1  # NAN is a reading, not a reason to reconnect


def test_a_meter_switched_off_and_on_again_is_measured_again(make_twin, open_meter):
    source = SteadySource(12.5)
    twin = make_twin(source).start()
    meter = open_meter(twin.resource)
    after_polls(meter, 1)
    port = twin.address[1]

    twin.close()
    wait_until(lambda: meter.stats().errors.get("connect", 0) >= 2, "refused reconnects",
               poll_s=0.002)
    make_twin(source, port=port).start()
    wait_until(lambda: meter.stats().connects == 2, "a reconnect to the new twin", poll_s=0.002)

    assert measure(meter).power_w == pytest.approx(12.5)


def test_a_meter_back_after_a_long_outage_is_found_by_the_next_window(make_twin, open_meter):
    """After seconds of refused reconnects the backoff is long; the next round's window
    edge cuts it short (the watchdog restarted an emulated vBS, or the meter came back)."""
    source = SteadySource(12.5)
    twin = make_twin(source).start()
    meter = open_meter(twin.resource, min_coverage=0.0)  # the window began in the outage
    after_polls(meter, 1)
    port = twin.address[1]

    twin.close()
    wait_until(lambda: meter.stats().errors.get("connect", 0) >= 7, "the backoff to grow",
               poll_s=0.002)
    make_twin(source, port=port).start()  # the backoff is now >= 2.5 s (0.02 s doubled 7x)
    meter.start()
    wait_until(lambda: meter.stats().connects == 2, "a reconnect at the window's edge",
               timeout_s=1.0, poll_s=0.002)
    after_polls(meter, 2)
    assert meter.stop().power_w == pytest.approx(12.5)


def test_an_unreachable_socket_raises_meter_error_at_connect():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free again once closed: nothing listens there
    resource = f"TCPIP0::127.0.0.1::{port}::SOCKET"
    with pytest.raises(MeterError, match=resource.replace(".", r"\.")):
        Gpm8213Meter(resource, timeout_s=TIMEOUT_S)


def test_driver_over_usb_cdc_serial_reads_the_twin(make_twin, open_meter):
    """The ASRL path through a pseudo-terminal that relays lines to the twin."""
    if importlib.util.find_spec("serial") is None:
        missing("pyvisa-py needs pyserial for ASRL resources (pip install pyserial)")
    twin = make_twin(SteadySource(7.5))
    controller, device = os.openpty()
    tty.setraw(controller)

    def relay() -> None:
        pending = b""
        while chunk := _read(controller):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                reply = twin.answer(line.decode("latin-1"))
                if reply is not None:
                    os.write(controller, reply.encode("latin-1") + b"\r\n")

    threading.Thread(target=relay, daemon=True).start()
    try:
        meter = open_meter(f"ASRL{os.ttyname(device)}::INSTR")
        assert measure(meter).power_w == pytest.approx(7.5)
        meter.close()
    finally:
        os.close(device)
        os.close(controller)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1024)
    except OSError:
        return b""  # closed: the test is over
