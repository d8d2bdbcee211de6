"""The exports API: API keys (hashed), duplicate prevention, idempotency, download tokens,
rate-limit bookkeeping.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- sha256 of tenant + object + normalised parameters (set by the API; NULL for runs
        -- started elsewhere). One active export per hash: 20 identical concurrent POSTs race
        -- on this index and exactly one INSERT wins.
        ALTER TABLE export_jobs ADD COLUMN request_hash text;
        ALTER TABLE export_jobs ADD COLUMN download_token_hash text;
        CREATE UNIQUE INDEX ux_export_jobs_active_request ON export_jobs (request_hash)
            WHERE status IN ('SCHEDULED', 'IN_PROGRESS') AND request_hash IS NOT NULL;

        CREATE TABLE api_keys (
            app_id      text PRIMARY KEY,
            token_hash  text NOT NULL,
            tenant      text NOT NULL,
            scopes      text[] NOT NULL,
            name        text,
            rate_limit  integer,  -- POSTs per window; NULL = the setting
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );

        -- Fixed-window counters per key; shared by every API process.
        CREATE TABLE api_rate_limits (
            app_id       text NOT NULL,
            window_start timestamptz NOT NULL,
            hits         integer NOT NULL,
            PRIMARY KEY (app_id, window_start)
        );

        CREATE TABLE api_idempotency_keys (
            app_id       text NOT NULL,
            key          text NOT NULL,
            request_hash text NOT NULL,
            export_id    uuid NOT NULL,
            response     jsonb NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (app_id, key)
        );

        -- Secrets the API processes share (the key that derives download tokens).
        CREATE TABLE api_secrets (
            name  text PRIMARY KEY,
            value text NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE api_secrets, api_idempotency_keys, api_rate_limits, api_keys;
        DROP INDEX ux_export_jobs_active_request;
        ALTER TABLE export_jobs DROP COLUMN download_token_hash, DROP COLUMN request_hash;
        """
    )
