"""The GPM-8213's SCPI dialect: the items the driver sets and reads, and how its replies
read (GW-Instek GPM-8213 programming manual; the transcripts in tests/test_gpm8213.py are a
real unit's). Shared by the driver (drivers/power/gpm8213.py), its SCPI twin and the
emulated meter, so all three speak exactly it.
"""

from __future__ import annotations

import math

from hil.base.errors import MeterError

ITEMS = ("U", "I", "P", "S", "FU", "LAMBDA", "Q", "FI")
"""The numeric items of the real unit's transcript."""
INTEGRATOR_ITEMS = ("U", "I", "P", "S", "FU", "LAMBDA", "WH", "TIME")
"""Same count (the unit is known to take 8 items); WH and TIME replace Q and fI."""
HEADER_NAMES = {"U": "Urms", "I": "Irms", "P": "P", "S": "S", "FU": "fU", "LAMBDA": "PF",
                "Q": "Q", "FI": "fI", "WH": "WH", "TIME": "Time"}
"""What ``:NUMERIC:NORMAL:HEADER?`` names each item (U..FI as seen on a real unit)."""
INTEGRATOR_SETUP = (":INTEGrate:STOP", ":INTEGrate:RESet", ":INTEGrate:MODE MANual",
                    ":INTEGrate:FUNCtion WATT", ":INTEGrate:STARt")
"""Integrate watts from zero until told to stop (no timer)."""
VALUE_QUERY = ":NUMERIC:NORMAL:VALUE?"
TERMINATION = "\r\n"
SCPI_NAN = 9.9e37
"""SCPI's 'not a number' is 9.91E+37; the GPM-8213 prints NAN, but either means missing."""


class BadReply(MeterError):
    """A line that is not what the query asks for (noise, a lost sync, a wrong item count)."""


def parse_values(line: str, count: int) -> list[float]:
    """The NR3 numbers of a value reply; NAN (or SCPI's 9.91E+37) becomes NaN."""
    fields = strip_echo(line).split(",")
    if len(fields) != count:
        raise BadReply(f"expected {count} values, got {len(fields)}: {line[:80]!r}")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise BadReply(f"not a list of numbers: {line[:80]!r}") from None
    return [v if math.isfinite(v) and abs(v) < SCPI_NAN else math.nan for v in values]


def strip_echo(line: str) -> str:
    """Drop a command header the meter echoes when ``:COMMunicate:HEADer`` is on."""
    line = line.strip()
    return line.split(" ", 1)[-1] if line.startswith(":") else line


def is_gpm8213(idn: str) -> bool:
    fields = idn.split(",")
    return len(fields) >= 2 and fields[1].strip().upper() == "GPM-8213"




def header_matches(reply: str, items: tuple[str, ...]) -> tuple[bool, bool]:
    """Whether ``:NUMERIC:NORMAL:HEADER?`` names the items that were set: (all but the
    integrator's WH and TIME, all of them)."""
    names = [n.strip() for n in strip_echo(reply).split(",")]
    wanted = [HEADER_NAMES[item] for item in items]
    if len(names) != len(items):
        return False, False
    same = [names[k].upper() == wanted[k].upper() for k in range(len(items))]
    core = all(s for s, item in zip(same, items) if item not in ("WH", "TIME"))
    return core, core and all(same)
