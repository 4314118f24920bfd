"""Drivers: how to talk to one real (or emulated) thing each."""
