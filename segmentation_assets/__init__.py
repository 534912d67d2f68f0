"""Dagster assets of the platform: one calculation, index and alias asset per segment type."""
