"""Settings that only make sense together are checked together."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from core.settings import Settings, settings_problems


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


def test_settings_problems_name_the_variable_and_what_was_given() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(lease_s="-1")  # type: ignore[arg-type]  (as the environment gives it)
    assert settings_problems(caught.value) == [
        "EXPORTFLOW_LEASE_S: Input should be greater than 0 (got '-1')"
    ]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"EXPORTFLOW_LEASE_S": "-1"}, "EXPORTFLOW_LEASE_S: Input should be greater than 0"),
        ({"EXPORTFLOW_HEARTBEAT_S": "40"}, "EXPORTFLOW_HEARTBEAT_S (40 s) must be at most half"),
    ],
)
def test_the_cli_refuses_invalid_settings_in_one_line_each_before_any_command(
    variables: dict[str, str], expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "exportflow", "export", "vouchers", "--fields", "code"],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "error: invalid settings:"
    assert done.stderr.splitlines()[1].startswith(f"  {expected}"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
