"""``wattline bench``: benchmarks that print a table and, with ``--json``, one JSON line.

Every figure is reported next to a baseline measured in the same run on the same
data, because the machines these run on are shared and noisy: the ratios are
what to compare between runs, not the absolute rates.
"""
