"""Benchmarks run as `qrgate bench …`: each prints one JSON object of figures measured side by side."""
