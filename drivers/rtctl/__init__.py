"""rtctl: the controller <-> vBS control protocol (spec: patches/PROTOCOL.md)."""
