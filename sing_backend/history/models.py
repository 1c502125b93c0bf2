"""Tables of the history database.

Singularity's objects are stored whole as orjson documents (`body`); the other columns exist only to
find them. Column types stay portable between SQLite (local mode) and MySQL/MariaDB (production).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Surrogate keys: BIGINT, except on SQLite where only an INTEGER PRIMARY KEY auto-increments.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's plain BLOB stops at 64 KiB; a SingularityTask (request + deploy + offers) can be larger.
DOCUMENT = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
# MySQL options (other databases ignore them): full UTF-8 for messages, and binary collation so that
# ids compare exactly ("Billing" and "billing" are different requests), not case-insensitively.
MYSQL_TABLE: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class Base(DeclarativeBase):
    pass


class RequestHistoryRow(Base):
    """One RequestHistory event."""

    __tablename__ = "request_history"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(32))
    user: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(DOCUMENT)

    __table_args__ = (Index("ix_request_history_request_created", "request_id", "created_at"), MYSQL_TABLE)


class DeployHistoryRow(Base):
    """One DeployHistory per deploy, rewritten as the deploy progresses."""

    __tablename__ = "deploy_history"

    request_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    deploy_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    deploy_state: Mapped[str | None] = mapped_column(String(32))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    user: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(DOCUMENT)

    __table_args__ = (Index("ix_deploy_history_request_timestamp", "request_id", "timestamp"), MYSQL_TABLE)


class TaskHistoryRow(Base):
    """One SingularityTask, with its latest status kept in columns for listing and filtering."""

    __tablename__ = "task_history"

    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(100))
    deploy_id: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(String(100))
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    last_task_status: Mapped[str | None] = mapped_column(String(32))
    # The task's "taskId" object on its own, so listings (TaskIdHistory) never parse the large body.
    task_id_body: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(DOCUMENT)

    __table_args__ = (
        Index("ix_task_history_request_started", "request_id", "started_at"),
        Index("ix_task_history_request_deploy_started", "request_id", "deploy_id", "started_at"),
        Index("ix_task_history_request_run", "request_id", "run_id"),
        # Also serves the age purge: a task is last updated no earlier than it started. No index has
        # updated_at, which changes with every status (migration 0004 says why).
        Index("ix_task_history_started", "started_at"),
        MYSQL_TABLE,
    )


class TaskUpdateRow(Base):
    """One TaskHistoryUpdate. No foreign key: an update may be recorded before its task row."""

    __tablename__ = "task_updates"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    task_state: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(DOCUMENT)

    __table_args__ = (Index("ix_task_updates_task_timestamp", "task_id", "timestamp"), MYSQL_TABLE)


class TaskHealthcheckRow(Base):
    """One health-check result of a task."""

    __tablename__ = "task_healthchecks"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(DOCUMENT)

    __table_args__ = (Index("ix_task_healthchecks_task_timestamp", "task_id", "timestamp"), MYSQL_TABLE)


class HistoryWriterRow(Base):
    """The last write each history store committed, in the same transaction as the write: a query
    reads it in its snapshot to know which of the store's queued writes that snapshot already holds."""

    __tablename__ = "history_writers"

    writer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    committed_seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)  # epoch ms; rows of stores long gone are deleted

    __table_args__ = (MYSQL_TABLE,)
