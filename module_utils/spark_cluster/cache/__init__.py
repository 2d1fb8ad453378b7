"""The hub cache and the JIT caches: their rules (rules) and the workers' weights fan-out
(fanout)."""
