"""Retention, audit and erasure: who asked for each export, an audit trail, retention indexes.

Revision ID: 0004
Revises: 0002
"""

from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Who asked: an API key id (api_key), a Prefect deployment or user (prefect), an OS
        -- user of the CLI (os_user). NULL for rows created before this revision.
        ALTER TABLE export_jobs ADD COLUMN requested_by text;
        ALTER TABLE export_jobs ADD COLUMN requester_kind text
            CHECK (requester_kind IN ('api_key', 'prefect', 'os_user'));
        CREATE INDEX ix_export_jobs_requester ON export_jobs (tenant, requested_by);
        -- The maintenance queries: DONE files past their expiry, finished rows past retention.
        CREATE INDEX ix_export_jobs_expiry ON export_jobs (expires_at) WHERE status = 'DONE';
        CREATE INDEX ix_export_jobs_finished ON export_jobs (finished_at)
            WHERE status IN ('DONE', 'ERROR', 'EXPIRED', 'CANCELLED');
        CREATE INDEX ix_api_idempotency_keys_created ON api_idempotency_keys (created_at);
        CREATE INDEX ix_api_rate_limits_window ON api_rate_limits (window_start);

        -- Append-only trail of what happened to exports: who, what, when, from where.
        CREATE TABLE export_audit (
            id          bigserial PRIMARY KEY,
            at          timestamptz NOT NULL DEFAULT now(),
            tenant      text NOT NULL,
            action      text NOT NULL
                CHECK (action IN ('create', 'download', 'delete', 'erase', 'expire')),
            export_id   uuid,
            actor       text,
            actor_kind  text,
            channel     text,
            ip          text,
            user_agent  text,
            details     jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX ix_export_audit_tenant_at ON export_audit (tenant, at DESC, id DESC);
        CREATE INDEX ix_export_audit_export ON export_audit (export_id);
        CREATE INDEX ix_export_audit_at ON export_audit (at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE export_audit;
        DROP INDEX ix_api_rate_limits_window, ix_api_idempotency_keys_created,
            ix_export_jobs_finished, ix_export_jobs_expiry, ix_export_jobs_requester;
        ALTER TABLE export_jobs DROP COLUMN requester_kind, DROP COLUMN requested_by;
        """
    )
