"""Clients and domain pieces shared by the Dagster assets, the API and the CLI."""
