"""Parts of a parallel export: one row per key range, written by the part runs.

Revision ID: 0014
Revises: 0002
"""

from alembic import op

revision = "0014"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per key range of a parallel export. The coordinator creates them; a part
        -- run writes only its own row, and only while the row's attempt is its attempt (a
        -- retried part bumps attempt, so a late write of the old run changes nothing).
        CREATE TABLE export_parts (
            job_id        uuid NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
            part          integer NOT NULL CHECK (part >= 0),
            attempt       integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
            status        text NOT NULL DEFAULT 'PENDING'
                          CHECK (status IN ('PENDING', 'RUNNING', 'DONE', 'FAILED')),
            lower_bound   jsonb,
            upper_bound   jsonb,
            expected_rows bigint NOT NULL,
            progress      bigint NOT NULL DEFAULT 0,
            row_count     bigint,
            bytes         bigint,
            sha256        text,
            storage_key   text,
            flow_run_id   uuid,
            host          text,
            pid           integer,
            backend_pid   integer,
            error         text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            started_at    timestamptz,
            finished_at   timestamptz,
            PRIMARY KEY (job_id, part)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE export_parts")
