"""What the controller writes for people: the link report, the benchmark (pure part and
HTTP client), the status table, the diagnostic bundle, and the pieces they share (output)."""
