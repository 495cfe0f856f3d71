"""
Drop-in publishing the built-in chat gateway (an L{INodeExtension}).
"""

from clustersync.gateway import GatewayExtension

gateway = GatewayExtension()
