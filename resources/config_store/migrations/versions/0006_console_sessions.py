"""Console sessions and the create forms' one-time tokens (SPEC section 10).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("kept_input", JSONB()),
    )
    # Expired sessions are deleted by their last use.
    op.create_index("ix_console_sessions_last_seen_at", "console_sessions", ["last_seen_at"])
    op.create_table(
        "console_submissions",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("segment_id", sa.String(128), sa.ForeignKey("segments.id")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_console_submissions_created_at", "console_submissions", ["created_at"])


def downgrade() -> None:
    op.drop_table("console_submissions")
    op.drop_table("console_sessions")
