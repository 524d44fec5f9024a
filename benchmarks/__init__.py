"""Runnable benchmarks of lamost2csst (see BENCHMARKS.md for recorded results)."""
