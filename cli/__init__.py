"""The `segmentation` command line."""
