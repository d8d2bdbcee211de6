"""The webhook sender's pure parts: address checks, backoff schedule, signatures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from core.errors import InvalidRequest
from core.settings import Settings
from db.webhooks import new_secret
from webhooks import check_url, retry_delay, sign


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://[::1]:8080/x",
        "http://[::ffff:10.0.0.1]/x",
        "https://172.16.5.4/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
        "http://[fe80::1]/x",
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_url(url, allow_private=False)
    assert info.value.key == "webhook_url_refused"
    check_url(url, allow_private=True)


def test_public_addresses_pass() -> None:
    check_url("https://93.184.215.14/hooks", allow_private=False)
    check_url("http://[2606:4700:4700::1111]/hooks", allow_private=False)


@pytest.mark.parametrize(
    "url", ["ftp://93.184.215.14/x", "/relative", "https://user:pw@93.184.215.14/x", "http://:80"]
)
def test_malformed_urls_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check_url(url, allow_private=True)


def test_backoff_doubles_from_the_base_up_to_the_cap_with_at_most_ten_percent_jitter() -> None:
    settings = Settings(webhook_retry_base_s=30, webhook_retry_max_s=3600)
    for attempts, base in [(1, 30), (2, 60), (3, 120), (6, 960), (7, 1920), (8, 3600), (20, 3600)]:
        delay = retry_delay(attempts, settings)
        assert base <= delay <= base * 1.1
    assert 600 <= retry_delay(1, settings, retry_after_s=600) <= 660  # Retry-After honoured
    assert retry_delay(1, settings, retry_after_s=10**9) <= 3600 * 1.1  # within the cap


def test_signature_verifies_with_each_live_secret_and_no_other() -> None:
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    body = '{"type":"export.done"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign((new, old), "msg_1", now, body),
    }
    assert Webhook(new).verify(body, headers) == {"type": "export.done"}
    assert Webhook(old).verify(body, headers) == {"type": "export.done"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("done", "failed"), headers)
