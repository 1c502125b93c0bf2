"""Index tasks by start time across requests, for the global task search (/api/history/tasks).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_task_history_started", "task_history", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_task_history_started", table_name="task_history")
