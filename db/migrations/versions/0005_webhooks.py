"""Signed webhooks: a tenant's endpoints and the durable outbox of deliveries.

A trigger on ``export_jobs`` enqueues one delivery per subscribed endpoint in the same
transaction as the job's final status change (DONE, ERROR, EXPIRED, CANCELLED), whoever makes
it (the pipeline, the API's cancel, the reaper, retention): a status is never committed
without its deliveries, and no writer of ``export_jobs`` has to remember to enqueue.

Revision ID: 0005
Revises: 0002
"""

from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_endpoints (
            id                    uuid PRIMARY KEY,
            tenant                text NOT NULL,
            url                   text NOT NULL,
            -- whsec_<base64>: HMAC-SHA256 needs the secret itself, so it is kept as is
            -- (like api_secrets) and returned by the API only when created or rotated.
            secret                text NOT NULL CHECK (secret LIKE 'whsec\\_%'),
            -- after a rotation, deliveries carry a second signature with the old secret
            -- until previous_secret_until, so receivers can switch without losing any
            previous_secret       text,
            previous_secret_until timestamptz,
            event_types           text[] NOT NULL,
            description           text,
            created_at            timestamptz NOT NULL DEFAULT now(),
            disabled_at           timestamptz
        );
        CREATE INDEX ix_webhook_endpoints_tenant ON webhook_endpoints (tenant)
            WHERE disabled_at IS NULL;

        CREATE TABLE webhook_outbox (
            id              text PRIMARY KEY,  -- the webhook-id header, the same on every attempt
            endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
            tenant          text NOT NULL,
            export_id       uuid,              -- no FK: deliveries outlive a deleted export
            event_type      text NOT NULL,
            payload         jsonb NOT NULL,    -- the body, fixed when enqueued
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_attempt_at timestamptz,
            last_status     integer,           -- HTTP status of the last attempt (NULL: none)
            last_error      text,
            delivered_at    timestamptz,
            failed_at       timestamptz,       -- given up (attempts exhausted, endpoint deleted)
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_webhook_outbox_due ON webhook_outbox (next_attempt_at)
            WHERE delivered_at IS NULL AND failed_at IS NULL;
        CREATE INDEX ix_webhook_outbox_endpoint ON webhook_outbox (endpoint_id, created_at DESC);
        CREATE INDEX ix_webhook_outbox_export ON webhook_outbox (export_id)
            WHERE export_id IS NOT NULL;

        CREATE FUNCTION exportflow_utc_iso(t timestamptz) RETURNS text
            LANGUAGE sql IMMUTABLE AS
            $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

        CREATE FUNCTION export_jobs_enqueue_webhooks() RETURNS trigger AS $$
        DECLARE
            event_type text := CASE NEW.status
                WHEN 'DONE' THEN 'export.done'
                WHEN 'ERROR' THEN 'export.failed'
                WHEN 'EXPIRED' THEN 'export.expired'
                WHEN 'CANCELLED' THEN 'export.cancelled'
            END;
        BEGIN
            IF event_type IS NULL THEN
                RETURN NULL;
            END IF;
            INSERT INTO webhook_outbox (id, endpoint_id, tenant, export_id, event_type, payload)
            SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.id, NEW.tenant, NEW.id,
                   event_type,
                   jsonb_build_object(
                       'type', event_type,
                       'timestamp', exportflow_utc_iso(now()),
                       'data', jsonb_build_object(
                           'id', NEW.id,
                           'object', 'export',
                           'exported_object', NEW.exported_object,
                           'status', CASE WHEN NEW.status IN ('EXPIRED', 'CANCELLED')
                                          THEN 'ERROR' ELSE NEW.status END,
                           'state', NEW.status,
                           'channel', NEW.channel,
                           'format', NEW.format,
                           'error', NEW.error,
                           'result', CASE WHEN NEW.result IS NULL THEN NULL
                               ELSE jsonb_build_object(
                                   'content_type', NEW.result -> 'content_type',
                                   'bytes', NEW.result -> 'bytes',
                                   'row_count', NEW.result -> 'row_count',
                                   'sha256', NEW.result -> 'sha256') END,
                           'created_at', exportflow_utc_iso(NEW.created_at),
                           'finished_at', exportflow_utc_iso(NEW.finished_at),
                           'expires_at', exportflow_utc_iso(NEW.expires_at)))
              FROM webhook_endpoints e
             WHERE e.tenant = NEW.tenant
               AND e.disabled_at IS NULL
               AND event_type = ANY (e.event_types);
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql;

        CREATE TRIGGER export_jobs_enqueue_webhooks
            AFTER UPDATE OF status ON export_jobs
            FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION export_jobs_enqueue_webhooks();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER export_jobs_enqueue_webhooks ON export_jobs;
        DROP FUNCTION export_jobs_enqueue_webhooks();
        DROP FUNCTION exportflow_utc_iso(timestamptz);
        DROP TABLE webhook_outbox;
        DROP TABLE webhook_endpoints;
        """
    )
