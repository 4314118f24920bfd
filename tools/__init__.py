"""The commands: the `hil` command line, the benchmark runner and the offline tools on
recorded or modelled data (see tools/README.md)."""
