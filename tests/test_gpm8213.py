"""The GPM-8213 driver speaks the meter's dialect exactly and turns polls into window means.

Three kinds of tests:
- exact exchanges against `FakeMeter`, a stand-in in the spirit of pymeasure's
  `expected_protocol`: it answers only the commands it was given and logs every exchange,
  so a test compares the whole conversation with the real unit's transcript
  (GWInstek,GPM-8213,GES913349,V1.05, written out below);
- static cases on pyvisa-sim meters (drivers/power/gpm8213-sim.yaml);
- the window arithmetic on hand-made samples, with the expected means worked out by hand.
The driver over a real socket (pyvisa-py) and its fault handling are in test_scpi_twin.py.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvisa
from pyvisa import constants
from waiting import wait_until

import drivers.power
from drivers.power.gpm8213 import Gpm8213Meter
from drivers.power.gpm8213_scpi import parse_values
from drivers.power.windows import Sample, WindowMean, integrated_mean, window_mean
from hil.base.errors import MeterError

SIM_FILE = Path(drivers.power.__file__).with_name("gpm8213-sim.yaml")
LAN = "TCPIP0::192.0.2.10::23::SOCKET"

# A real unit's transcript (GWInstek,GPM-8213,GES913349, firmware V1.05).
IDN_REAL = "GWInstek,GPM-8213,GES913349,V1.05"
HEADER_REAL = "Urms,Irms,P,S,fU,PF,Q,fI"
VALUE_REAL = ("127.58E+00,240.02E-03,17.688E+00,30.622E+00,59.993E+00,0.5776E+00,"
              "24.997E+00,NAN")
SETUP_REAL = [
    ("*IDN?", IDN_REAL),
    (":NUMERIC:NORMAL:NUMBER 8", None),
    (":NUMERIC:NORMAL:ITEM1 U", None),
    (":NUMERIC:NORMAL:ITEM2 I", None),
    (":NUMERIC:NORMAL:ITEM3 P", None),
    (":NUMERIC:NORMAL:ITEM4 S", None),
    (":NUMERIC:NORMAL:ITEM5 FU", None),
    (":NUMERIC:NORMAL:ITEM6 LAMBDA", None),
    (":NUMERIC:NORMAL:ITEM7 Q", None),
    (":NUMERIC:NORMAL:ITEM8 FI", None),
    (":NUMERIC:NORMAL:HEADER?", HEADER_REAL),
]
VALUE_QUERY = ":NUMERIC:NORMAL:VALUE?"


def values_line(power_w: float) -> str:
    """A value reply in the real unit's layout with only P changed."""
    fields = VALUE_REAL.split(",")
    fields[2] = "NAN" if math.isnan(power_w) else f"{power_w:.3f}E+00"
    return ",".join(fields)


# ---------------------------------------------------------------------------- FakeMeter
class RaiseOnPoll:
    """Fed instead of a line: the next value query raises this exception."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class FakeMeter:
    """A GPM-8213 behind a fake pyvisa resource manager.

    `replies` maps every command the driver may send to its reply (None: no reply). Value
    queries take the lines the test `feed`s, one per query, and wait up to the resource's
    timeout like a silent meter. Each exchange is logged as (command, reply); a command not
    in `replies`, or a write/query mix-up, is recorded in `unexpected` and raises.
    """

    def __init__(self, replies: list[tuple[str, str | None]]) -> None:
        self.replies = dict(replies)
        self.log: list[tuple[str, str | None]] = []
        self.unexpected: list[str] = []
        self.opened: list[tuple[str, dict[str, Any]]] = []
        self.gone = False
        self._lines: queue.Queue[Any] = queue.Queue()

    def feed(self, *lines: str | RaiseOnPoll) -> None:
        for line in lines:
            self._lines.put(line)

    def hang_up(self) -> None:
        """The meter goes away: blocked and later queries and opens fail at once."""
        self.gone = True
        self._lines.put(RaiseOnPoll(pyvisa.VisaIOError(constants.StatusCode.error_connection_lost)))

    # ---- the resource manager API the driver uses
    def open_resource(self, name: str, **kwargs: Any) -> FakeSession:
        if self.gone:
            raise pyvisa.VisaIOError(constants.StatusCode.error_resource_not_found)
        self.opened.append((name, kwargs))
        return FakeSession(self, kwargs["timeout"] / 1000)

    def close(self) -> None:
        pass

    def exchange(self, command: str, *, is_query: bool, timeout_s: float) -> str | None:
        if command == VALUE_QUERY and is_query:
            reply = self._next_line(timeout_s)
        elif command in self.replies and (self.replies[command] is not None) == is_query:
            reply = self.replies[command]
        else:
            self.unexpected.append(command)
            raise AssertionError(f"unexpected {'query' if is_query else 'write'} {command!r}")
        self.log.append((command, reply))
        return reply

    def _next_line(self, timeout_s: float) -> str:
        if self.gone:
            raise pyvisa.VisaIOError(constants.StatusCode.error_connection_lost)
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise pyvisa.VisaIOError(constants.StatusCode.error_timeout) from None
        if isinstance(line, RaiseOnPoll):
            raise line.exc
        return line


class FakeSession:
    def __init__(self, meter: FakeMeter, timeout_s: float) -> None:
        self.meter, self.timeout_s, self.closed = meter, timeout_s, False

    def write(self, command: str) -> None:
        self.meter.exchange(command, is_query=False, timeout_s=self.timeout_s)

    def query(self, command: str) -> str:
        reply = self.meter.exchange(command, is_query=True, timeout_s=self.timeout_s)
        assert reply is not None
        return reply

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def open_meter() -> Iterator[Callable[..., Gpm8213Meter]]:
    """Builds meters (short polls, patient timeouts) and closes them after the test. The
    lines a test feeds, not the clock, decide what a window holds, so any coverage will do
    (coverage has tests of its own, on the twin)."""
    made: list[tuple[Gpm8213Meter, Any]] = []

    def make(rm: Any, resource: str = LAN, **kwargs: Any) -> Gpm8213Meter:
        kwargs = {"poll_s": 0.01, "timeout_s": 5.0, "min_coverage": 0.0, **kwargs}
        meter = Gpm8213Meter(resource, resource_manager=rm, **kwargs)
        made.append((meter, rm))
        return meter

    yield make
    for meter, rm in made:
        if isinstance(rm, FakeMeter):
            rm.hang_up()  # wakes the poller from its wait for a value line
        meter.close()


def handled(meter: Gpm8213Meter) -> int:
    """Value replies the poller has dealt with: parsed, or counted as an error."""
    stats = meter.stats()
    return stats.polls + sum(stats.errors.values())


def window_over(meter: Gpm8213Meter, fake: FakeMeter, *lines: str | RaiseOnPoll):
    """A window in which the meter answers `lines` (then is silent), after the reading
    `start()` asks for at the window's edge: that one (the first line again) stands for
    time before the window and does not count."""
    edge = next(line for line in lines if isinstance(line, str))
    before = handled(meter)
    meter.start()
    fake.feed(edge, *lines)
    wait_until(lambda: handled(meter) >= before + 1 + len(lines), "the fed lines polled",
               poll_s=0.002)
    return meter.stop()


# ---------------------------------------------------------------------------- exact exchanges
def test_connect_and_first_reading_follow_the_real_units_transcript(open_meter):
    fake = FakeMeter(SETUP_REAL)
    meter = open_meter(fake)
    reading = window_over(meter, fake, VALUE_REAL)

    assert fake.log[:12] == [*SETUP_REAL, (VALUE_QUERY, VALUE_REAL)]
    assert fake.unexpected == []
    assert reading.power_w == pytest.approx(17.688, rel=1e-12)
    assert reading.samples == 1
    assert reading.energy_j == pytest.approx(17.688 * reading.duration_s)


def test_lan_resource_is_opened_with_cr_lf_terminations_and_the_timeout():
    fake = FakeMeter(SETUP_REAL)
    meter = Gpm8213Meter(LAN, poll_s=0.01, timeout_s=1.5, resource_manager=fake)
    fake.hang_up()
    meter.close()

    name, options = fake.opened[0]
    assert name == LAN
    assert options["read_termination"] == "\r\n"
    assert options["write_termination"] == "\r\n"
    assert options["timeout"] == 1500


def test_usb_cdc_resource_is_opened_8n1():
    fake = FakeMeter(SETUP_REAL)
    meter = Gpm8213Meter("ASRL/dev/ttyACM0::INSTR", poll_s=0.01, resource_manager=fake)
    fake.hang_up()
    meter.close()

    name, options = fake.opened[0]
    assert name == "ASRL/dev/ttyACM0::INSTR"
    assert (options["data_bits"], options["parity"], options["stop_bits"]) == (
        8, constants.Parity.none, constants.StopBits.one)
    assert options["read_termination"] == options["write_termination"] == "\r\n"


INTEGRATOR_SETUP = [
    *SETUP_REAL[:8],  # the same session, but WH and TIME in place of Q and fI
    (":NUMERIC:NORMAL:ITEM7 WH", None),
    (":NUMERIC:NORMAL:ITEM8 TIME", None),
    (":NUMERIC:NORMAL:HEADER?", "Urms,Irms,P,S,fU,PF,WH,Time"),
]


def test_integrator_mode_reads_wh_and_time_and_starts_the_integrator_from_zero(open_meter):
    start_integrator = [(":INTEGrate:STOP", None), (":INTEGrate:RESet", None),
                        (":INTEGrate:MODE MANual", None), (":INTEGrate:FUNCtion WATT", None),
                        (":INTEGrate:STARt", None)]
    fake = FakeMeter(INTEGRATOR_SETUP + start_integrator)
    meter = open_meter(fake, use_integrator=True)

    assert fake.log == INTEGRATOR_SETUP + start_integrator
    assert meter.stats().integrator


def test_integrator_mode_falls_back_to_polled_samples_when_the_meter_lacks_wh_and_time(
        open_meter):
    # The meter keeps its old items 7 and 8: the header shows WH and TIME did not take.
    setup = [*INTEGRATOR_SETUP[:-1], (":NUMERIC:NORMAL:HEADER?", HEADER_REAL)]
    fake = FakeMeter(setup)
    meter = open_meter(fake, use_integrator=True)
    # WH and TIME would be read from items 7 and 8 (Q, fI): 24.997 and NAN here.
    reading = window_over(meter, fake, VALUE_REAL, VALUE_REAL)

    assert not any(command.startswith(":INTEG") for command, _ in fake.log)
    assert not meter.stats().integrator
    assert reading.power_w == pytest.approx(17.688)


def test_wrong_identity_raises_meter_error_naming_the_resource_and_the_answer():
    rm = pyvisa.ResourceManager(f"{SIM_FILE}@sim")
    resource = "TCPIP0::192.0.2.12::23::SOCKET"
    with pytest.raises(MeterError) as err:
        Gpm8213Meter(resource, resource_manager=rm)
    assert resource in str(err.value)
    assert "Keysight Technologies,34461A" in str(err.value)


def test_items_that_did_not_take_effect_raise_meter_error_at_connect():
    fake = FakeMeter([*SETUP_REAL[:-1], (":NUMERIC:NORMAL:HEADER?", "Urms,Irms,P")])
    with pytest.raises(MeterError) as err:
        Gpm8213Meter(LAN, resource_manager=fake)
    assert LAN in str(err.value)
    assert "'Urms,Irms,P'" in str(err.value)


def test_an_unreachable_meter_raises_meter_error_naming_the_resource():
    fake = FakeMeter(SETUP_REAL)
    fake.hang_up()
    with pytest.raises(MeterError, match=r"TCPIP0::192\.0\.2\.10::23::SOCKET: cannot connect"):
        Gpm8213Meter(LAN, resource_manager=fake)


def test_a_serial_port_the_user_may_not_open_says_how_to_get_access():
    class NoAccess:  # what pyserial raises for a port of another group (as a non-root user)
        def open_resource(self, name, **options):
            raise OSError(13, f"could not open port {name[4:-7]}: Permission denied")

        def close(self):
            pass

    with pytest.raises(MeterError, match=r"ASRL/dev/ttyACM0::INSTR: cannot connect .*"
                       r"usermod -aG dialout"):
        Gpm8213Meter("ASRL/dev/ttyACM0::INSTR", resource_manager=NoAccess())


# ---------------------------------------------------------------------------- windows
def test_nan_readings_are_skipped_not_counted_as_zero(open_meter):
    fake = FakeMeter(SETUP_REAL)
    meter = open_meter(fake)
    reading = window_over(meter, fake, values_line(10.0), values_line(math.nan),
                          values_line(10.0))

    assert reading.power_w == pytest.approx(10.0)
    assert reading.samples == 2
    assert meter.stats().nan_samples == 1


def test_a_window_with_only_nan_readings_raises_meter_error_and_the_next_one_is_valid(
        open_meter):
    fake = FakeMeter(SETUP_REAL)
    meter = open_meter(fake)
    with pytest.raises(MeterError, match="valid readings cover 0%"):
        window_over(meter, fake, values_line(math.nan), values_line(math.nan))

    assert window_over(meter, fake, values_line(12.0)).power_w == pytest.approx(12.0)


def test_a_window_without_any_reading_raises_meter_error(open_meter):
    meter = open_meter(FakeMeter(SETUP_REAL))
    meter.start()
    with pytest.raises(MeterError, match=LAN.replace(".", r"\.")):
        meter.stop()


def test_stop_without_start_raises_meter_error(open_meter):
    meter = open_meter(FakeMeter(SETUP_REAL))
    with pytest.raises(MeterError, match="without start"):
        meter.stop()


def test_a_garbage_line_is_counted_and_the_driver_reconnects(open_meter):
    fake = FakeMeter(SETUP_REAL)
    meter = open_meter(fake)
    reading = window_over(meter, fake, values_line(8.0), "\x15#@!\xff 12.3E+",
                          values_line(8.0))

    stats = meter.stats()
    assert stats.errors == {"garbage": 1}
    assert stats.connects == 2
    assert len(fake.opened) == 2
    assert fake.log.count(SETUP_REAL[0]) == 2  # identified again on the new session
    assert reading.power_w == pytest.approx(8.0)
    assert reading.samples == 2


def test_an_unexpected_exception_in_a_poll_does_not_stop_the_poller(open_meter):
    fake = FakeMeter(SETUP_REAL)
    meter = open_meter(fake)
    reading = window_over(meter, fake, RaiseOnPoll(RuntimeError("a bug in a backend")),
                          values_line(6.0))

    assert meter.stats().errors == {"io": 1}
    assert reading.power_w == pytest.approx(6.0)


# ---------------------------------------------------------------------------- pyvisa-sim
@pytest.mark.parametrize("resource", [LAN, "ASRL1::INSTR"])
def test_a_simulated_meter_on_lan_or_serial_reads_the_real_units_power(open_meter, resource):
    meter = open_meter(pyvisa.ResourceManager(f"{SIM_FILE}@sim"), resource)
    meter.start()
    polled = meter.stats().polls
    wait_until(lambda: meter.stats().polls >= polled + 3, "three polls", poll_s=0.002)
    reading = meter.stop()

    assert reading.power_w == pytest.approx(17.688)
    assert reading.samples >= 2
    assert meter.stats().errors == {}


def test_a_simulated_meter_without_readings_fails_every_window(open_meter):
    resource = "TCPIP0::192.0.2.11::23::SOCKET"
    meter = open_meter(pyvisa.ResourceManager(f"{SIM_FILE}@sim"), resource)
    meter.start()
    polled = meter.stats().polls
    wait_until(lambda: meter.stats().polls >= polled + 2, "two polls", poll_s=0.002)
    with pytest.raises(MeterError) as err:
        meter.stop()
    assert resource in str(err.value)
    assert meter.stats().valid_samples == 0


# ---------------------------------------------------------------------------- arithmetic
def test_the_window_mean_weights_each_reading_by_the_window_time_it_stands_for():
    samples = [Sample(0.0, 10.0), Sample(0.5, 15.0), Sample(1.0, 20.0), Sample(1.5, 40.0),
               Sample(3.0, 60.0), Sample(3.5, math.nan), Sample(4.0, 30.0), Sample(5.0, 50.0),
               Sample(6.0, 70.0)]
    # Window (0.5, 4.2], readings standing for at most 1 s. Each stands for the time since
    # the previous one:
    #   1.0 -> (0.5, 1.0]  0.5 s x 20 W      1.5 -> (1.0, 1.5]  0.5 s x 40 W
    #   3.0 -> (2.0, 3.0]  1.0 s x 60 W      3.5 -> NAN, its 0.5 s counts for nothing
    #   4.0 -> (3.5, 4.0]  0.5 s x 30 W      5.0 -> (4.0, 4.2]  0.2 s x 50 W (the tail)
    # 0.0, 0.5 and 6.0 stand for no time inside. Covered: 2.7 s of 3.7 s; (1.5, 2.0] is a gap.
    mean = window_mean(samples, 0.5, 4.2, max_span_s=1.0)
    assert mean == WindowMean(pytest.approx((10 + 20 + 60 + 15 + 10) / 2.7),
                              pytest.approx(2.7 / 3.7), 5)


def test_a_reading_that_began_before_the_window_is_left_out():
    # 1.0 stands for (0.0, 1.0]: half of it is the previous round's power
    samples = [Sample(0.0, 10.0), Sample(1.0, 20.0), Sample(2.0, 30.0)]
    assert window_mean(samples, 0.5, 2.0, max_span_s=1.0) == WindowMean(30.0, 1 / 1.5, 1)
    assert window_mean(samples[1:], 1.5, 2.0, max_span_s=1.0) is None  # 2.0: (1.0, 2.0]


def test_the_reading_after_the_window_brackets_its_end():
    samples = [Sample(1.0, 10.0), Sample(2.0, 20.0)]
    assert window_mean(samples, 1.0, 2.0, max_span_s=1.0) == WindowMean(20.0, 1.0, 1)
    assert window_mean(samples, 1.0, 1.5, max_span_s=1.0) == WindowMean(20.0, 1.0, 1)
    assert window_mean(samples[:1], 1.0, 1.999, max_span_s=1.0) is None


def test_a_window_covered_only_by_nan_readings_has_no_mean():
    samples = [Sample(0.0, 10.0), Sample(1.0, math.nan), Sample(2.0, math.nan)]
    assert window_mean(samples, 0.5, 2.0, max_span_s=1.0) is None


def integrated(t_s: float, energy_wh: float, time_s: float, session: int = 1,
               asked_s: float = 0.005) -> Sample:
    """A reading answered at t_s, asked for `asked_s` before."""
    return Sample(t_s, 99.0, energy_wh=energy_wh, integrated_s=time_s, session=session,
                  sent_s=t_s - asked_s)


def test_integrated_mean_is_energy_over_time_between_the_readings_at_the_windows_edges():
    samples = [integrated(0.9, 1.0, 10.0), integrated(1.01, 1.001, 10.1),
               integrated(1.9, 1.005, 11.0), integrated(3.02, 1.0135, 12.1),
               integrated(3.9, 1.02, 13.0)]
    # Edges of (1.0, 3.0]: the readings at 1.01 and 3.02: 0.0125 Wh = 45 J in 2 s; the
    # window after the first edge's reply is surely inside the integrated interval.
    mean = integrated_mean(samples, 1.0, 3.0, max_lag_s=0.1)
    assert mean.power_w == pytest.approx(22.5)
    assert mean.coverage == pytest.approx(0.995)


def test_a_reading_asked_for_before_the_edge_does_not_open_the_integrated_interval():
    """Answered after the edge, but its integrator may hold energy from before it (a late
    reply to a query sent in the previous round)."""
    late_reply = integrated(1.05, 1.0, 10.0, asked_s=0.2)
    samples = [late_reply, integrated(1.08, 1.0005, 10.08), integrated(3.01, 1.0105, 12.0)]
    mean = integrated_mean(samples, 1.0, 3.0, max_lag_s=0.1)
    assert mean.power_w == pytest.approx(0.01 * 3600 / 1.92)


def test_a_reconnect_splits_the_integrated_window_into_the_spans_of_each_session():
    """Each session's integrator counts from its own zero: the window's mean is their
    energy over their time; the gap between them is not covered."""
    samples = [integrated(1.01, 1.0, 10.0, session=1), integrated(1.9, 1.005, 10.9, session=1),
               integrated(2.1, 0.0, 0.0, session=2), integrated(3.01, 0.005, 0.9, session=2)]
    mean = integrated_mean(samples, 1.0, 3.0, max_lag_s=0.1)
    assert mean.power_w == pytest.approx(0.01 * 3600 / 1.8)
    assert mean.coverage == pytest.approx(((1.895 - 1.01) + (3.0 - 2.1)) / 2.0)


def test_a_late_first_reading_shortens_the_integrated_coverage():
    samples = [integrated(1.5, 1.0, 10.0), integrated(3.01, 1.006, 11.5)]
    assert integrated_mean(samples, 1.0, 3.0, max_lag_s=0.1).coverage == pytest.approx(0.75)


def test_integrated_mean_is_none_when_no_integrator_advanced_in_the_window():
    stopped = [integrated(1.01, 1.0, 10.0), integrated(3.01, 1.0, 10.0)]
    assert integrated_mean(stopped, 1.0, 3.0, max_lag_s=0.1) is None
    one_reading_per_session = [integrated(1.01, 1.0, 10.0, session=1),
                               integrated(3.01, 1.1, 12.0, session=2)]
    assert integrated_mean(one_reading_per_session, 1.0, 3.0, max_lag_s=0.1) is None
    after_the_end_read = [integrated(1.01, 1.0, 10.0), integrated(3.2, 1.1, 12.0)]
    assert integrated_mean(after_the_end_read, 1.0, 3.0, max_lag_s=0.1) is None


def test_values_parse_as_nr3_with_nan_missing():
    values = parse_values(VALUE_REAL, 8)
    assert values[:7] == [127.58, 0.24002, 17.688, 30.622, 59.993, 0.5776, 24.997]
    assert math.isnan(values[7])


def test_values_accept_scpi_nan_and_an_echoed_header():
    assert math.isnan(parse_values("9.91E+37,1.0E+00", 2)[0])
    assert parse_values(":NUMERIC:NORMAL:VALUE 1.5E+00,2.0E+00", 2) == [1.5, 2.0]


@pytest.mark.parametrize("line", ["1.0E+00,2.0E+00", "1.0E+00,abc,3.0E+00", "", "-113,\"x\""])
def test_values_with_the_wrong_count_or_not_numbers_are_rejected(line):
    with pytest.raises(MeterError):
        parse_values(line, 3)
