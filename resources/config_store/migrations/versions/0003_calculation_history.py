"""Calculation history: one row per segment and calculation, as SPEC section 9 describes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment_calculations",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("segment_id", sa.String(128), sa.ForeignKey("segments.id"), nullable=False),
        sa.Column("segment_type", sa.String(64), nullable=False),
        sa.Column("partition_key", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("calculated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("member_count", sa.BigInteger(), nullable=False),
        sa.Column("entered", sa.BigInteger()),
        sa.Column("exited", sa.BigInteger()),
        sa.Column("index", sa.String(255)),
        sa.UniqueConstraint("segment_id", "partition_key", "run_id", name="uq_segment_calculations_run"),
        sa.CheckConstraint("member_count >= 0", name="ck_segment_calculations_member_count"),
    )
    # A segment's history, newest partition first; and the latest earlier calculation of each segment.
    op.create_index(
        "ix_segment_calculations_segment_partition",
        "segment_calculations",
        ["segment_id", sa.text("partition_key DESC"), sa.text("calculated_at DESC")],
    )
    # The runs behind a type's partitions, and the rows an index step completes.
    op.create_index(
        "ix_segment_calculations_type_partition", "segment_calculations", ["segment_type", "partition_key", "run_id"]
    )


def downgrade() -> None:
    op.drop_table("segment_calculations")
