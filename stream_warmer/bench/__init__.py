"""Benchmarks (DESIGN §6): ``pipeline`` (serve vs a bare consumer, latency) and ``inference``.

They print a table and write JSON; they are not timed tests.
"""
