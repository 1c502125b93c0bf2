"""Drop the two indexes on task_history.updated_at.

Every status change of a task moved its entries in both, which made a status change cost as much as
writing the task. What they served reads without them: filters on updatedAt read a request's tasks
through the request indexes, and the age purge goes by start time first (a task is updated no earlier
than it starts).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_task_history_request_updated", table_name="task_history")
    op.drop_index("ix_task_history_updated", table_name="task_history")


def downgrade() -> None:
    op.create_index("ix_task_history_updated", "task_history", ["updated_at"])
    op.create_index("ix_task_history_request_updated", "task_history", ["request_id", "updated_at"])
