"""The `segmentation` command line (SPEC 6)."""
