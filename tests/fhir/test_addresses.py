"""Issue 26, items 7 and 8: the SSRF guard behind an egress proxy, and the IPv6 forms that
carry a forbidden IPv4 address (fhir/addresses.py, fhir/session.py, Pipeline.check_fhir_server).
"""

from __future__ import annotations

import socket

import pytest
from builders import APAP_CODEINE, bundle, hook_request, med_order, phenotype_obs
from hostile_server import hostile_server, json_answer

from cds_service.fhir import session as fhir_session
from cds_service.fhir.addresses import embedded_ipv4, forbidden_address, forbidden_host
from cds_service.web.app import create_app

PM = phenotype_obs("Poor Metabolizer")


def call(client, fhir_server):
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], fhir_server=fhir_server, token="ehr-token"
    )
    response = client.post("/cds-services/pgx-order-select", json=body)
    return response.status_code, response.get_json()


# -- 8. IPv6 transition forms and Oracle Cloud's metadata address --------------------------

#: 169.254.169.254 (and the other metadata addresses) inside every IPv6 form a gateway or
#: relay turns into an IPv4 connection
WRAPPED_METADATA = [
    "::ffff:169.254.169.254",  # IPv4-mapped (refused before too)
    "::169.254.169.254",  # IPv4-compatible (deprecated, ::/96)
    "::a9fe:a9fe",
    "64:ff9b::169.254.169.254",  # NAT64, well-known prefix
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::6464:64c8",  # 100.100.100.200 (Alibaba Cloud)
    "64:ff9b::c000:c0",  # 192.0.0.192 (Oracle Cloud)
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 (RFC 8215), /96
    "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64, /48 (RFC 6052 layout)
    "64:ff9b:1:a9:fe:a9fe::",  # local-use NAT64, /56
    "64:ff9b:1:0:a9:fea9:fe00:0",  # local-use NAT64, /64
    "2002:a9fe:a9fe::1",  # 6to4
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo: client 169.254.169.254 (inverted)
    "2001:0:a9fe:a9fe::1",  # Teredo: server 169.254.169.254
    "192.0.0.192",  # Oracle Cloud, plain
    "::ffff:192.0.0.192",
]


@pytest.mark.parametrize("address", WRAPPED_METADATA)
def test_ipv6_forms_of_a_metadata_address_are_forbidden(address):
    assert forbidden_address(address)
    assert forbidden_host(f"[{address}]")


@pytest.mark.parametrize(
    "address",
    [
        "::1",  # loopback (in ::/96, but 0.0.0.1 is no forbidden IPv4 address)
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1 (private addresses are allowed)
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "2001:db8::1",
        "2606:4700::1111",
        "fd00::1",
    ],
)
def test_other_ipv6_addresses_are_still_allowed(address):
    assert not forbidden_address(address)


def test_embedded_ipv4_unwraps_each_form():
    import ipaddress

    def unwrap(text):
        return {str(a) for a in embedded_ipv4(ipaddress.IPv6Address(text))}

    assert "169.254.169.254" in unwrap("64:ff9b::a9fe:a9fe")
    assert "169.254.169.254" in unwrap("2002:a9fe:a9fe::")
    assert "169.254.169.254" in unwrap("2001:0:4136:e378:8000:63bf:5601:5601")
    assert "169.254.169.254" in unwrap("64:ff9b:1:a9fe:a9:fe00::")
    assert unwrap("2606:4700::1111") == set()


@pytest.mark.parametrize("address", [*WRAPPED_METADATA[:6], "2002:a9fe:a9fe::1"])
def test_a_hook_call_naming_a_wrapped_metadata_address_is_a_403(client, address):
    status, answer = call(client, f"http://[{address}]/fhir")
    assert status == 403 and "may query" in answer["error"]


def test_a_name_resolving_to_a_nat64_metadata_address_is_not_contacted(monkeypatch):
    """The guard in the connection applies the same rules to what DNS answers."""
    from cds_service.fhir.addresses import GuardRefused, guarded_socket

    def nat64(host, *args, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::a9fe:a9fe", 80, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", nat64)
    with pytest.raises(GuardRefused):
        guarded_socket("dns64.test", 80, 1.0)


# -- 7. behind an egress proxy -------------------------------------------------------------


@pytest.fixture
def proxy(monkeypatch):
    """An egress proxy on loopback (it records what it is asked for and answers a bundle),
    named by HTTP_PROXY and HTTPS_PROXY as in a hospital's environment."""
    with hostile_server() as server:
        server.routes["http://"] = json_answer(bundle(PM))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, server.base)
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        fhir_session._proxies_for_origin.cache_clear()
        yield server
    fhir_session._proxies_for_origin.cache_clear()


@pytest.mark.parametrize(
    "fhir_server",
    [
        "http://169.254.169.254.nip.io/fhir",  # a public name for the metadata address
        "http://kubernetes.default.svc/api",  # the cluster's API server
        "http://metadata.google.internal/computeMetadata/v1",
        "http://fhir.example.org/fhir",  # any server: the proxy would resolve it unseen
    ],
)
def test_without_a_list_no_server_is_read_through_the_proxy(proxy, settings, fhir_server):
    """Unauthenticated (any server allowed) and a proxy in the environment: the proxy would
    resolve the name where the guard cannot see it, so unlisted servers are refused."""
    status, answer = call(create_app(settings).test_client(), fhir_server)
    assert status == 403 and "may query" in answer["error"]
    assert proxy.requests == []


def test_a_listed_server_resolving_to_metadata_is_not_handed_to_the_proxy(
    proxy, settings, monkeypatch
):
    """A listed name is resolved here before the proxy gets it: one that leads to the
    metadata address (a DNS answer that changed) is a read that fails, not a proxied one."""
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "ehr.example.org":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    listed = settings.model_copy(update={"fhir_servers": "http://ehr.example.org/fhir"})
    status, _answer = call(create_app(listed).test_client(), "http://ehr.example.org/fhir")
    assert status == 412  # the data could not be read
    assert proxy.requests == []


def test_a_listed_server_is_read_through_the_proxy(proxy, settings, monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "ehr.example.org":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    listed = settings.model_copy(update={"fhir_servers": "http://ehr.example.org/fhir"})
    status, answer = call(create_app(listed).test_client(), "http://ehr.example.org/fhir")
    assert status == 200 and len(answer["cards"]) == 1
    assert proxy.paths() and all(
        p.startswith("http://ehr.example.org/fhir/") for p in proxy.paths()
    )


def test_servers_the_proxy_is_not_asked_for_keep_the_old_rules(proxy, settings, monkeypatch):
    """NO_PROXY (a local FHIR server): the read goes straight, through the address guard."""
    with hostile_server() as fhir:
        fhir.routes["/fhir"] = json_answer(bundle(PM))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        fhir_session._proxies_for_origin.cache_clear()
        status, answer = call(create_app(settings).test_client(), f"{fhir.base}/fhir")
    assert status == 200 and len(answer["cards"]) == 1
    assert proxy.requests == []
