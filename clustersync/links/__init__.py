"""
The link layer: Twisted protocols and factories that carry the peer
protocol between nodes (framing, handshake, liveness, TLS).
"""
