"""Offline tools on recorded or modelled data (see tools/README.md)."""
