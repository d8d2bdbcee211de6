"""export_jobs: one row per export, the single source of status.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE export_jobs (
            id              uuid PRIMARY KEY,
            tenant          text NOT NULL,
            exported_object text NOT NULL,
            format          text NOT NULL,
            channel         text NOT NULL
                CHECK (channel IN ('API', 'PREFECT_UI', 'SCHEDULE', 'CLI')),
            status          text NOT NULL DEFAULT 'SCHEDULED'
                CHECK (status IN ('SCHEDULED', 'IN_PROGRESS', 'DONE', 'ERROR',
                                  'EXPIRED', 'CANCELLED')),
            parameters      jsonb NOT NULL,
            total           bigint,
            progress        bigint NOT NULL DEFAULT 0,
            result          jsonb,
            error           text,
            flow_run_id     uuid,
            created_at      timestamptz NOT NULL DEFAULT now(),
            started_at      timestamptz,
            finished_at     timestamptz,
            expires_at      timestamptz
        );
        CREATE INDEX ix_export_jobs_tenant_created ON export_jobs (tenant, created_at DESC, id);
        CREATE INDEX ix_export_jobs_active ON export_jobs (status)
            WHERE status IN ('SCHEDULED', 'IN_PROGRESS');

        -- A finished job never goes back; only the allowed edges of the status graph pass.
        CREATE FUNCTION export_jobs_guard_status() RETURNS trigger AS $$
        BEGIN
            IF NEW.status = OLD.status THEN
                RETURN NEW;
            END IF;
            IF (OLD.status, NEW.status) IN (
                ('SCHEDULED', 'IN_PROGRESS'), ('SCHEDULED', 'ERROR'),
                ('SCHEDULED', 'CANCELLED'), ('SCHEDULED', 'EXPIRED'),
                ('IN_PROGRESS', 'DONE'), ('IN_PROGRESS', 'ERROR'),
                ('IN_PROGRESS', 'CANCELLED'), ('IN_PROGRESS', 'EXPIRED'),
                ('DONE', 'EXPIRED')
            ) THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'export_jobs %: illegal status change % -> %',
                OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END;
        $$ LANGUAGE plpgsql;

        CREATE TRIGGER export_jobs_guard_status
            BEFORE UPDATE OF status ON export_jobs
            FOR EACH ROW EXECUTE FUNCTION export_jobs_guard_status();
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE export_jobs; DROP FUNCTION export_jobs_guard_status();")
