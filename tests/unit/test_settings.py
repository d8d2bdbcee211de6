"""Settings that only make sense together are checked together."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_the_defaults_renew_the_lease_well_within_it() -> None:
    settings = Settings()
    assert settings.heartbeat_s * 2 <= settings.lease_s


def test_renewals_rarer_than_half_the_lease_are_refused_naming_both_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTFLOW_LEASE_S", "60")
    monkeypatch.setenv("EXPORTFLOW_HEARTBEAT_S", "40")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "EXPORTFLOW_HEARTBEAT_S (40 s)" in message and "EXPORTFLOW_LEASE_S (60 s)" in message
    assert Settings(heartbeat_s=30, lease_s=60).heartbeat_s == 30  # exactly half is fine
    assert Settings(heartbeat_s=0, lease_s=1).heartbeat_s == 0  # every chunk
