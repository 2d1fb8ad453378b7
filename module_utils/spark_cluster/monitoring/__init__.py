"""Metrics over time: the table of metric names, recording and alert rules (metrics) and the
node check that writes what node exporter cannot see (node_check)."""
