"""
The clustersync benchmark harness (C{make bench}).

C{python -m clustersync.bench} runs every benchmark in one process tree and
writes C{docs/benchmarks.md}; C{--quick} runs small sizes.  Each figure is
measured next to a reference in the same run and reported as a ratio, so
that a noisy machine moves both alike.

Benchmarks are not tests: they live here, not in C{tests/}.
"""
