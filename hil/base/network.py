"""Which addresses only this machine can reach: what decides whether a socket needs CURVE
(an rtctl endpoint) or a token (`hil serve`)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost", "lo")
"""Loopback by name: the host name, and the interface ZeroMQ may be told to bind."""


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) and the loopback names; a wildcard (`*`,
    0.0.0.0, ::), any other address or name is reachable from a network."""
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_host(endpoint: str) -> str | None:
    """The host of a ZeroMQ ``tcp://HOST:PORT`` endpoint; None for ``ipc://`` and
    ``inproc://`` (a file or this process: no network)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return None
    return rest.rpartition(":")[0]


def is_network_endpoint(endpoint: str) -> bool:
    """Whether another machine could connect to a socket bound at `endpoint`."""
    host = endpoint_host(endpoint)
    return host is not None and not is_loopback_host(host)
