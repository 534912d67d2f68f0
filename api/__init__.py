"""The HTTP API: thin routes over the shared readers and the config store."""
