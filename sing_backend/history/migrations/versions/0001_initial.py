"""Request, deploy and task history, task updates and health-check results.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types in models.py: a revision must keep creating what it created back then.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DOCUMENT = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
MYSQL_TABLE: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "request_history",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("user", sa.String(200), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("body", DOCUMENT, nullable=False),
        **MYSQL_TABLE,
    )
    op.create_index("ix_request_history_request_created", "request_history", ["request_id", "created_at"])

    op.create_table(
        "deploy_history",
        sa.Column("request_id", sa.String(100), primary_key=True),
        sa.Column("deploy_id", sa.String(100), primary_key=True),
        sa.Column("deploy_state", sa.String(32), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("user", sa.String(200), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("body", DOCUMENT, nullable=False),
        **MYSQL_TABLE,
    )
    op.create_index("ix_deploy_history_request_timestamp", "deploy_history", ["request_id", "timestamp"])

    op.create_table(
        "task_history",
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("deploy_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(100), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("last_task_status", sa.String(32), nullable=True),
        sa.Column("task_id_body", sa.LargeBinary(), nullable=False),
        sa.Column("body", DOCUMENT, nullable=False),
        **MYSQL_TABLE,
    )
    op.create_index("ix_task_history_request_started", "task_history", ["request_id", "started_at"])
    op.create_index("ix_task_history_request_deploy_started", "task_history", ["request_id", "deploy_id", "started_at"])
    op.create_index("ix_task_history_request_run", "task_history", ["request_id", "run_id"])
    op.create_index("ix_task_history_request_updated", "task_history", ["request_id", "updated_at"])
    op.create_index("ix_task_history_updated", "task_history", ["updated_at"])

    op.create_table(
        "task_updates",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("task_state", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("status_reason", sa.String(100), nullable=True),
        sa.Column("body", DOCUMENT, nullable=False),
        **MYSQL_TABLE,
    )
    op.create_index("ix_task_updates_task_timestamp", "task_updates", ["task_id", "timestamp"])

    op.create_table(
        "task_healthchecks",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("body", DOCUMENT, nullable=False),
        **MYSQL_TABLE,
    )
    op.create_index("ix_task_healthchecks_task_timestamp", "task_healthchecks", ["task_id", "timestamp"])


def downgrade() -> None:
    for table in ("task_healthchecks", "task_updates", "task_history", "deploy_history", "request_history"):
        op.drop_table(table)
