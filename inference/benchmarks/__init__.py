"""Benchmarks: ``inference.benchmarks.<name>.run()`` yields ``(label, value, unit, note)`` rows."""
