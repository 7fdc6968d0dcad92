"""Where a webhook may go: the URL's form and the addresses its host resolves to (webhook_urls.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orders_core.webhook_urls import (
    AddressKind,
    IPAddress,
    WebhookUrl,
    address_kind,
    destination_refusal,
    literal_address,
    parse_webhook_url,
)

PUBLIC_V4 = ("1.1.1.1", "8.8.8.8", "93.184.215.14")
PUBLIC_V6 = ("2606:4700::1111", "2a00:1450:4001:80b::200e")
NOT_PUBLIC = {
    "127.0.0.1": AddressKind.LOOPBACK,
    "127.255.0.9": AddressKind.LOOPBACK,
    "::1": AddressKind.LOOPBACK,
    "10.0.0.1": AddressKind.PRIVATE,
    "172.16.5.4": AddressKind.PRIVATE,
    "192.168.1.1": AddressKind.PRIVATE,
    "100.64.0.1": AddressKind.PRIVATE,  # shared address space (carrier-grade NAT)
    "192.0.2.1": AddressKind.PRIVATE,  # documentation
    "fc00::1": AddressKind.PRIVATE,
    "fd12:3456::1": AddressKind.PRIVATE,
    "169.254.169.254": AddressKind.LINK_LOCAL,  # the cloud metadata service
    "fe80::1": AddressKind.LINK_LOCAL,
    "224.0.0.1": AddressKind.MULTICAST,
    "ff02::1": AddressKind.MULTICAST,
    "240.0.0.1": AddressKind.RESERVED,
    "255.255.255.255": AddressKind.RESERVED,
    "0.0.0.0": AddressKind.UNSPECIFIED,
    "::": AddressKind.UNSPECIFIED,
    # IPv6 addresses that carry an IPv4 one lead where it does
    "::ffff:127.0.0.1": AddressKind.LOOPBACK,
    "::ffff:10.1.2.3": AddressKind.PRIVATE,
    "::ffff:169.254.169.254": AddressKind.LINK_LOCAL,
    "2002:7f00:1::": AddressKind.LOOPBACK,  # 6to4 of 127.0.0.1
    "2002:a00:1::": AddressKind.PRIVATE,  # 6to4 of 10.0.0.1
    "64:ff9b::7f00:1": AddressKind.LOOPBACK,  # NAT64 of 127.0.0.1
}
PRIVATE_RANGES = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)
NEVER_RANGES = ("224.0.0.0/4", "240.0.0.0/4", "ff00::/8")


def url(text: str) -> WebhookUrl:
    parsed = parse_webhook_url(text)
    assert isinstance(parsed, WebhookUrl), parsed
    return parsed


def addresses_in(network: str) -> st.SearchStrategy[IPAddress]:
    net = ipaddress.ip_network(network)
    return st.integers(0, net.num_addresses - 1).map(lambda i: net[i])


def mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(f"::ffff:{address}")


@pytest.mark.parametrize(("text", "kind"), NOT_PUBLIC.items())
def test_each_kind_of_address_is_told(text: str, kind: AddressKind) -> None:
    assert address_kind(ipaddress.ip_address(text)) is kind


@pytest.mark.parametrize("text", PUBLIC_V4 + PUBLIC_V6)
def test_public_addresses_are_public(text: str) -> None:
    assert address_kind(ipaddress.ip_address(text)) is AddressKind.PUBLIC


@given(st.sampled_from(PRIVATE_RANGES).flatmap(addresses_in))
def test_every_address_of_a_private_range_is_refused_unless_private_is_allowed(address: IPAddress) -> None:
    target = url("https://partner.example/hooks")
    reason = destination_refusal(target, [address], allow_private=False)
    assert reason is not None and str(address) in reason
    assert destination_refusal(target, [address], allow_private=True) is None


@given(st.sampled_from(PRIVATE_RANGES[:6]).flatmap(addresses_in))
def test_an_ipv4_private_address_mapped_into_ipv6_is_refused_as_well(address: IPAddress) -> None:
    assert isinstance(address, ipaddress.IPv4Address)
    reason = destination_refusal(url("https://partner.example/"), [mapped(address)], allow_private=False)
    assert reason is not None


@given(st.sampled_from(NEVER_RANGES).flatmap(addresses_in))
def test_multicast_and_reserved_addresses_are_refused_even_when_private_is_allowed(
    address: IPAddress,
) -> None:
    for allow_private in (False, True):
        assert destination_refusal(url("https://partner.example/"), [address], allow_private=allow_private)


@given(st.ip_addresses(v=4).filter(lambda a: a.is_global and not a.is_multicast))
def test_globally_reachable_ipv4_addresses_are_accepted(address: IPAddress) -> None:
    assert destination_refusal(url("https://partner.example/"), [address], allow_private=False) is None


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    addresses = [ipaddress.ip_address("1.1.1.1"), ipaddress.ip_address("10.0.0.7")]
    reason = destination_refusal(url("https://partner.example/"), addresses, allow_private=False)
    assert reason is not None and "10.0.0.7" in reason and "private" in reason


def test_a_host_that_resolves_to_nothing_is_refused() -> None:
    assert destination_refusal(url("https://partner.example/"), [], allow_private=True)


@pytest.mark.parametrize("allow_private", [False, True])
def test_plain_http_to_a_public_host_is_refused(allow_private: bool) -> None:
    reason = destination_refusal(
        url("http://partner.example/"), [ipaddress.ip_address("1.1.1.1")], allow_private=allow_private
    )
    assert reason is not None and "https" in reason


def test_plain_http_is_only_for_loopback_when_private_is_allowed() -> None:
    loopback = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert destination_refusal(url("http://localhost:8080/"), loopback, allow_private=True) is None
    assert destination_refusal(url("http://localhost:8080/"), loopback, allow_private=False)
    private = [ipaddress.ip_address("10.0.0.1")]
    assert destination_refusal(url("http://10.0.0.1/"), private, allow_private=True)
    assert destination_refusal(url("https://10.0.0.1/"), private, allow_private=True) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ftp://partner.example/", "https://"),
        ("partner.example/hooks", "https://"),
        ("https://", "no host"),
        ("https://user:pw@partner.example/", "user name or password"),
        ("https://partner.example/#top", "fragment"),
        ("https://partner .example/", "spaces"),
        ("https://partner.example/\x00", "control"),
        ("https://bücher.example/", "ASCII"),
        ("https://%31%32%37.0.0.1/", "neither a host name nor an IP address"),
        ("https://a..b/", "neither a host name nor an IP address"),
        ("https://[::1/", "cannot be read"),
        ("https://partner.example:70000/", "cannot be read"),
        ("https://partner.example:0/", "port"),
        ("https://partner.example/" + "x" * 2100, "longer than"),
    ],
)
def test_urls_of_the_wrong_form_are_refused_with_the_reason(text: str, why: str) -> None:
    reason = parse_webhook_url(text)
    assert isinstance(reason, str) and why in reason


def test_a_url_is_split_into_host_and_port() -> None:
    assert url("https://Partner.Example/hooks?x=1") == WebhookUrl(
        "https://Partner.Example/hooks?x=1", "https", "partner.example", 443
    )
    assert url("http://[::1]:8080/h").host == "::1"
    assert url("http://[::1]:8080/h").port == 8080


def test_an_ip_address_host_needs_no_resolution() -> None:
    assert literal_address("::1") == ipaddress.ip_address("::1")
    assert literal_address("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert literal_address("localhost") is None
    assert literal_address("2130706433") is None  # a resolver's business: it is judged by what it resolves to
