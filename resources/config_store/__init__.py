"""The config store: segment configs, their audit log and API keys, in PostgreSQL."""
