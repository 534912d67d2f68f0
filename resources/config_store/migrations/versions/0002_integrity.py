"""Integrity of the config store: one audit entry per segment version, an append-only audit log,
allowed statuses, actions and scopes, and an index for label filters.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Rows in the audit log are history: a trigger refuses to change or remove them (DROP TABLE still works).
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION segment_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'segment_audit is append-only: % refused', TG_OP;
END;
$$
"""


def upgrade() -> None:
    op.create_check_constraint("ck_segments_status", "segments", "status IN ('active', 'paused', 'archived')")
    op.create_check_constraint("ck_segments_version", "segments", "version >= 1")
    op.create_index(
        "ix_segments_labels", "segments", ["labels"], postgresql_using="gin", postgresql_ops={"labels": "jsonb_path_ops"}
    )
    op.create_check_constraint("ck_segment_audit_action", "segment_audit", "action IN ('create', 'update', 'archive')")
    # The unique constraint leads with segment_id, so it also serves what the old index did.
    op.create_unique_constraint("uq_segment_audit_segment_version", "segment_audit", ["segment_id", "version"])
    op.drop_index("ix_segment_audit_segment_id", table_name="segment_audit")
    op.create_check_constraint("ck_api_keys_scope", "api_keys", "scope IN ('read', 'admin')")
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(
        "CREATE TRIGGER segment_audit_append_only BEFORE UPDATE OR DELETE ON segment_audit "
        "FOR EACH ROW EXECUTE FUNCTION segment_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER segment_audit_no_truncate BEFORE TRUNCATE ON segment_audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION segment_audit_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER segment_audit_no_truncate ON segment_audit")
    op.execute("DROP TRIGGER segment_audit_append_only ON segment_audit")
    op.execute("DROP FUNCTION segment_audit_append_only()")
    op.drop_constraint("ck_api_keys_scope", "api_keys", type_="check")
    op.create_index("ix_segment_audit_segment_id", "segment_audit", ["segment_id"])
    op.drop_constraint("uq_segment_audit_segment_version", "segment_audit", type_="unique")
    op.drop_constraint("ck_segment_audit_action", "segment_audit", type_="check")
    op.drop_index("ix_segments_labels", table_name="segments")
    op.drop_constraint("ck_segments_version", "segments", type_="check")
    op.drop_constraint("ck_segments_status", "segments", type_="check")
