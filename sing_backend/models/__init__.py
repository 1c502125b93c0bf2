"""Pydantic models matching Singularity's JSON objects."""
