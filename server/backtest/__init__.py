"""Backtests: the real cycle over historical windows, scored against what the market did."""
