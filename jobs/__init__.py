"""Command-line entry points of lamost2csst: ``python -m jobs.<name> --help``."""
