"""The HTTP API (SPEC 7): thin routes over the shared readers and the config store."""
