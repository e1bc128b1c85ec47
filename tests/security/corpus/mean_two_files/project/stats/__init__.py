"""Summary statistics for the latency dashboard."""
