"""Wall-power meters: the GW-Instek GPM-8213 over pyvisa, and its SCPI-over-TCP twin."""

from drivers.power.gpm8213 import Gpm8213Meter
from drivers.power.scpi_twin import Fault, ScpiMeterTwin

__all__ = ["Fault", "Gpm8213Meter", "ScpiMeterTwin"]
