"""Tests of lamost2csst.nn (a package so that test_training.py does not clash with tests/io/)."""
