"""Which addresses the service may connect to, and connections made only to those.

No request goes to a link-local or cloud-metadata address (169.254.0.0/16, fe80::/10, the
metadata hosts), in any of the forms the C resolver reads, nor to an IPv6 address that
carries one of them (IPv4-mapped and -compatible, NAT64, 6to4, Teredo); a host is checked as
resolved and as actually connected (DNS rebinding), and its lookup counts against the read's
deadline.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

# Cloud instance-metadata endpoints outside the link-local ranges, and the names they go by.
METADATA_NETWORKS = [
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS (IPv6)
    ipaddress.ip_network("192.0.0.192/32"),  # Oracle Cloud
]
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})


def forbidden_address(address: str) -> bool:
    """Link-local (169.254/16, fe80::/10: where cloud metadata lives), a known metadata
    address, multicast or unspecified; IPv4 also in the legacy forms the C resolver reads,
    and inside the IPv6 forms that carry an IPv4 address (``embedded_ipv4``)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        legacy = _legacy_ipv4(address)
        if legacy is None:
            return False
        ip = legacy
    if isinstance(ip, ipaddress.IPv6Address) and any(_forbidden(v4) for v4 in embedded_ipv4(ip)):
        return True
    return _forbidden(ip)


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or any(ip in net for net in METADATA_NETWORKS)
    )


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local use
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible (RFC 4291)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address may lead to: IPv4-mapped (``::ffff:a.b.c.d``),
    IPv4-compatible (``::a.b.c.d``), NAT64 (``64:ff9b::/96``; in ``64:ff9b:1::/48`` at every
    place RFC 6052 allows for the site's prefix length), 6to4 (``2002::/16``) and Teredo
    (``2001::/32``: its server and its client). A NAT64 gateway or a relay turns them into a
    connection to that IPv4 address, so each is checked as one."""
    found: list[ipaddress.IPv4Address] = []
    value = int(ip)
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _NAT64 or ip in _COMPATIBLE:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip in _NAT64_LOCAL:
        # RFC 6052 section 2.2: bits 64-71 are zero and skipped
        for prefix in (48, 56, 64, 96):
            found.append(ipaddress.IPv4Address(_rfc6052_ipv4(value, prefix)))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _rfc6052_ipv4(value: int, prefix: int) -> int:
    """The 32 bits RFC 6052 places after a ``prefix``-bit NAT64 prefix (skipping bits 64-71)."""
    bits = [(value >> (127 - i)) & 1 for i in range(128)]
    positions = [i for i in range(prefix, 128) if not 64 <= i < 72][:32]
    out = 0
    for i in positions:
        out = (out << 1) | bits[i]
    return out


def _legacy_ipv4(address: str) -> ipaddress.IPv4Address | None:
    """``address`` as an IPv4 address if ``inet_aton`` reads it as one: one to four parts,
    each decimal, octal (leading 0) or hex (0x), e.g. 2852039166, 0xa9fea9fe, 169.254.43518
    and 0251.0376.0251.0376, all 169.254.169.254. ``getaddrinfo`` (and so the connection)
    reads them so, ``ipaddress`` does not."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(address))
    except (OSError, ValueError):  # not an address; ValueError: a NUL or non-ASCII
        return None


def forbidden_host(host: str) -> bool:
    """A host name or literal address the service never contacts."""
    host = host.strip("[]").rstrip(".").lower()
    return host in METADATA_HOSTS or forbidden_address(host)


@dataclass
class Watch:
    """The connection a read in this thread is using, for the deadline watchdog (which calls
    ``expire`` once, from its own thread, when the deadline comes first)."""

    connection: Any = None  # urllib3's or http.client's: what has the socket
    done: bool = False
    deadline: float | None = None  # time.monotonic(): the read's whole budget
    expired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire(self) -> None:
        """Cut the connection, so that a blocked read returns now; one attached later is
        refused (``attach``)."""
        with self.lock:
            self.expired = True
            sock = getattr(self.connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def attach(self, connection: Any) -> None:
        """Watch ``connection`` (connected: it has its socket) from now on; past the deadline
        already, it is not used (the watchdog, having fired, would not cut it)."""
        with self.lock:
            if self.expired:
                raise TimeoutError("the deadline passed")
            self.connection = connection

    def detach(self) -> bool:
        """Stop watching the connection (before it is kept for another read); False if the
        deadline came first and cut it."""
        with self.lock:
            self.connection = None
            return not self.expired


current = threading.local()
_RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dns")


def _reset_resolver() -> None:
    global _RESOLVER
    _RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dns")


os.register_at_fork(after_in_child=_reset_resolver)


def _resolve(host: str, port: int, wait: float | None) -> list[Any]:
    """getaddrinfo within ``wait`` seconds (a resolver that does not answer would otherwise
    hold the call past its budget: the system resolver tries for 5 s and more); [] when it
    fails or takes longer (the lookup is left to finish on its own thread)."""
    try:
        if wait is None or _is_address(host):  # nothing to look up: no thread
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if wait <= 0:
            return []
        future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            future.cancel()  # still queued behind slow lookups: never run for nobody
            return []
    except (OSError, UnicodeError):
        return []


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class GuardRefused(OSError):
    """No connection: the host resolves to a forbidden address, not in time, or not at all."""


def check_before_proxy(host: str, port: int) -> None:
    """A read about to go through an egress proxy, which resolves ``host`` itself where the
    guard cannot see the address: the name is resolved here first (within this thread's read
    deadline) and refused if it is a metadata name or any of its addresses is forbidden. The
    proxy may still resolve it otherwise (the address is not pinned), so only FHIR servers
    the operator listed are read through a proxy at all (``Pipeline.check_fhir_server``); a
    listed name this machine cannot resolve is left to the proxy."""
    if forbidden_host(host):
        raise GuardRefused("refused: a link-local or metadata address")
    watch = getattr(current, "watch", None)
    deadline = None if watch is None else watch.deadline
    wait = None if deadline is None else deadline - time.monotonic()
    if any(forbidden_address(str(info[4][0])) for info in _resolve(host, port, wait)):
        raise GuardRefused("refused: a link-local or metadata address")


def _connect_one(address: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to one address already checked (no lookup here)."""
    return socket.create_connection((address, port), timeout)


def guarded_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    """A connected socket to ``host``, refusing link-local and metadata addresses both as
    resolved and as actually connected; the lookup counts against this thread's read
    deadline. Every address of the host is checked, then they are tried in turn (one that
    does not answer within ``timeout`` is passed over for the next while the deadline lasts).
    """
    watch = getattr(current, "watch", None)
    deadline = None if watch is None else watch.deadline
    wait = None if deadline is None else deadline - time.monotonic()
    infos = _resolve(host, port, wait)
    if not infos:
        raise GuardRefused("the host name could not be resolved in time")
    if any(forbidden_address(str(info[4][0])) for info in infos):
        raise GuardRefused("refused: a link-local or metadata address")
    # connect to the addresses just checked (no second lookup: it could answer otherwise,
    # and it would not be bounded); TLS still checks the host name
    last: OSError | None = None
    for address in dict.fromkeys(str(info[4][0]) for info in infos):
        try:
            sock = _connect_one(address, port, timeout)
        except OSError as exc:  # the next address
            last = exc
            if deadline is not None and time.monotonic() >= deadline:
                break
            continue
        try:
            peer = str(sock.getpeername()[0])
        except OSError:
            peer = ""
        if forbidden_address(peer):
            sock.close()
            raise GuardRefused("refused: a link-local or metadata address")
        return sock
    raise last or GuardRefused("no address could be reached")
