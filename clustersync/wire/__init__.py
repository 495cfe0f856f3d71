"""
The wire layer: the peer protocol's messages and their line codec.

Pure Python, no Twisted: every other layer depends on this one and it
depends on nothing of clustersync.
"""
