"""The BBU host itself: CPU load (psutil) and CPU package energy (RAPL via powercap)."""
