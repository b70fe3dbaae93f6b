"""CONTRACT 2.3: the source IP of every path that stores one, under TRUSTED_PROXIES."""

import os
import subprocess
import sys

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from engagement_platform.clientip import client_ip, parse_trusted_proxies
from renders.models import EngagementEvent
from tests.sharing import engagement
from tests.test_email_flow import path_of, urls_in


def source(*, peer="127.0.0.1", forwarded=None, real_ip=None) -> str | None:
    meta = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    if real_ip is not None:
        meta["HTTP_X_REAL_IP"] = real_ip
    return client_ip(meta)


@pytest.fixture
def proxies(settings):
    def use(value: str):
        settings.TRUSTED_PROXIES = parse_trusted_proxies(value)
    return use


@pytest.mark.parametrize(("meta", "expected"), [
    ({"forwarded": "198.51.100.1, 10.0.0.1", "real_ip": "192.0.2.1"}, "198.51.100.1"),
    ({"forwarded": "not-an-ip, 198.51.100.1", "real_ip": "192.0.2.1"}, "192.0.2.1"),
    ({"real_ip": "192.0.2.1"}, "192.0.2.1"),
    ({"peer": "203.0.113.9"}, "203.0.113.9"),
    ({"peer": "", "forwarded": "bad"}, None),
])
def test_trusting_every_peer_takes_the_first_hop_then_x_real_ip_then_the_peer(proxies, meta, expected):
    proxies("*")
    assert source(**meta) == expected


@pytest.mark.parametrize(("meta", "expected"), [
    # an untrusted peer is its own source, whatever it sends
    ({"peer": "203.0.113.50", "forwarded": "198.51.100.1", "real_ip": "192.0.2.1"}, "203.0.113.50"),
    # a trusted peer: the right-most hop that is not a trusted proxy, invalid entries skipped
    ({"forwarded": "198.51.100.1, 203.0.113.7"}, "203.0.113.7"),
    ({"forwarded": "198.51.100.1, 203.0.113.7, nonsense, 10.4.5.6, 127.0.0.1"}, "203.0.113.7"),
    ({"forwarded": "2001:db8::7, 10.0.0.1"}, "2001:db8::7"),
    ({"peer": "::ffff:10.9.9.9", "forwarded": "203.0.113.7"}, "203.0.113.7"),
    # every hop trusted: the left-most; no hop: the proxy's X-Real-IP, else the peer
    ({"forwarded": "10.0.0.2, 10.0.0.1"}, "10.0.0.2"),
    ({"forwarded": "bad", "real_ip": "192.0.2.1"}, "192.0.2.1"),
    ({}, "127.0.0.1"),
    ({"peer": "not-an-address", "forwarded": "198.51.100.1"}, None),
])
def test_with_trusted_proxies_a_client_cannot_choose_its_address(proxies, meta, expected):
    proxies("127.0.0.1, 10.0.0.0/8")
    assert source(**meta) == expected


@pytest.mark.parametrize("bad", ["", " , ", "10.0.0.0/33", "example.com", "*, 10.0.0.1", "10.0.0.1/8/8", "999.1.1.1"])
def test_a_bad_trusted_proxies_value_is_improperly_configured(bad):
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        parse_trusted_proxies(bad)


def test_a_bad_trusted_proxies_environment_refuses_to_start():
    env = {**os.environ, "TRUSTED_PROXIES": "10.0.0.1, not-a-network", "DEBUG": "1",
           "DJANGO_SETTINGS_MODULE": "engagement_platform.settings"}
    result = subprocess.run([sys.executable, "-c", "from django.conf import settings; settings.TRUSTED_PROXIES"],
                            env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "not-a-network" in result.stderr


def test_partner_events_use_the_same_rule(api, render, proxies):
    proxies("127.0.0.1")
    for i in range(5):
        response = api.post(f"/v1/renders/{render.id}/events", {"eventType": "viewed"}, format="json",
                            REMOTE_ADDR="203.0.113.50", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        assert response.status_code == 200

    assert engagement(api, render)["counts"]["viewed"] == 1
    assert EngagementEvent.objects.get().source_ip == "203.0.113.50"


def test_the_pixel_uses_the_same_rule(api, client, render, proxies, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    proxies("127.0.0.1")
    assert api.post(f"/v1/renders/{render.id}/emails", {"to": "alice@example.com"}, format="json").status_code == 201
    pixel = path_of(urls_in(mail.outbox[0])["pixel"])

    client.get(pixel, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")

    opened = EngagementEvent.objects.get(event_type="email_opened")
    assert opened.source_ip == "203.0.113.7"
