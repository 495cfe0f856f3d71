"""Entry point of C{python -m clustersync.bench}."""

from clustersync.bench.main import main

main()
