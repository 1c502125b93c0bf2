"""Sing: a Singularity-compatible scheduler for services, workers, cron jobs and one-off tasks."""
