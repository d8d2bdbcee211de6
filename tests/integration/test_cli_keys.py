"""``exportflow keys``: create prints the two headers, list never shows tokens, revoke works."""

from __future__ import annotations

import sqlalchemy as sa
from typer.testing import CliRunner

from api.auth import authenticate
from exportflow.cli import app


def test_keys_create_list_revoke(engine: sa.Engine) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--scopes", "exports:read"])
    assert created.exit_code == 0, created.output
    id_line, token_line = created.output.strip().splitlines()
    app_id = id_line.removeprefix("X-App-Id: ")
    token = token_line.removeprefix("X-App-Token: ")
    key = authenticate(engine, app_id, token)
    assert key is not None and key.tenant == "acme" and key.scopes == ("exports:read",)

    listed = runner.invoke(app, ["keys", "list", "--tenant", "acme"])
    assert app_id in listed.output and token not in listed.output

    assert runner.invoke(app, ["keys", "revoke", app_id]).exit_code == 0
    assert authenticate(engine, app_id, token) is None
    assert runner.invoke(app, ["keys", "revoke", app_id]).exit_code == 1
    bad = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--scopes", "admin"])
    assert bad.exit_code == 2
