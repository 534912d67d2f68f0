"""Previews: a segment type and params counted on one partition, queued for a Dagster run (SPEC section 7).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "previews",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("segment_type", sa.String(64), nullable=False),
        sa.Column("params", JSONB(), nullable=False),
        sa.Column("partition_key", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("member_count", sa.BigInteger()),
        sa.Column("sample_customer_ids", JSONB()),
        sa.Column("error", sa.Text()),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("claim", sa.String(128)),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.String(64)),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="ck_previews_status"),
        sa.CheckConstraint("member_count >= 0", name="ck_previews_member_count"),
    )
    # The queue: the sensor's queued previews in request order, and the unfinished ones it watches.
    op.create_index("ix_previews_queue", "previews", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_table("previews")
