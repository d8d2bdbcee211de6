"""Attempts and leases on export_jobs: the running attempt holds a lease the reaper watches.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- attempt: the attempt the job is on (1 = the first launch); every write an attempt
        -- makes says WHERE attempt = <its number>, so a stale attempt changes nothing.
        -- attempt_started_at: when that attempt's run claimed it (NULL: launched, not claimed).
        -- lease_expires_at: the deadline for the attempt to show life (claim, then a renewal
        -- per chunk); for a launched attempt, the deadline to claim it. Past it, the reaper
        -- relaunches the job (a new attempt) or fails it.
        ALTER TABLE export_jobs
            ADD COLUMN attempt integer NOT NULL DEFAULT 1,
            ADD COLUMN attempt_started_at timestamptz,
            ADD COLUMN lease_expires_at timestamptz,
            ADD COLUMN heartbeat_at timestamptz,
            ADD COLUMN last_error text,
            ADD COLUMN retry_of uuid;
        UPDATE export_jobs SET lease_expires_at = now()
            WHERE status IN ('SCHEDULED', 'IN_PROGRESS');
        CREATE INDEX ix_export_jobs_lease ON export_jobs (lease_expires_at)
            WHERE status IN ('SCHEDULED', 'IN_PROGRESS');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX ix_export_jobs_lease;
        ALTER TABLE export_jobs DROP COLUMN retry_of, DROP COLUMN last_error,
            DROP COLUMN heartbeat_at, DROP COLUMN lease_expires_at,
            DROP COLUMN attempt_started_at, DROP COLUMN attempt;
        """
    )
