"""Job attempts (each attempt's start and end; jobs.started_at stays the first start), the kind of a
job's source (local paths are stored relative to the model root from now on), and live workers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # plain ALTER TABLE (no batch copy), so offline SQL renders for SQLite too
    op.add_column('jobs', sa.Column('source_kind', sa.String(length=16), nullable=False, server_default='local'))
    # jobs written before this revision stored local sources as absolute paths
    op.execute(
        "UPDATE jobs SET source_kind = CASE"
        " WHEN source LIKE 'upload:%' THEN 'upload'"
        " WHEN source LIKE 's3://%' THEN 's3'"
        " WHEN source LIKE '/%' THEN 'local'"
        " ELSE 'hub' END"
    )

    op.create_table('job_attempts',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=128), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'number', name='uq_job_attempts_job_number')
    )
    # the one attempt an older row remembers: its latest (started_at was overwritten by each retry)
    op.execute(
        "INSERT INTO job_attempts (job_id, number, worker, started_at, finished_at, outcome)"
        " SELECT id, attempts, COALESCE(lease_owner, ''), started_at, finished_at, CASE status"
        " WHEN 'running' THEN 'running' WHEN 'cancelling' THEN 'running' WHEN 'queued' THEN 'lost'"
        " ELSE status END"
        " FROM jobs WHERE started_at IS NOT NULL AND attempts > 0"
    )

    op.create_table('workers',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('device_classes', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('workers')
    op.drop_table('job_attempts')
    op.drop_column('jobs', 'source_kind')  # SQLite >= 3.35 drops columns in place
