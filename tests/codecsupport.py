"""
The spec's example of every message type, and helpers that turn them into
lines, for the codec tests.
"""

from __future__ import annotations

import json

from clustersync.wire.codec import encode
from clustersync.wire.messages import (
    Broadcast,
    ChannelMembership,
    ChannelMessage,
    ClientConnected,
    ClientDisconnected,
    DirectMessage,
    Hello,
    SessionMessage,
    SyncState,
)

# The examples of the peer protocol specification (the wire that
# docs/protocol.md describes), copied literally.
SPEC_EXAMPLES = {
    "HELLO": """{
  "type": "HELLO",
  "origin": "srv-a",
  "payload": {
    "serverId": "srv-a"
  }
}""",
    "SYNC_STATE": """{
  "type": "SYNC_STATE",
  "origin": "srv-a",
  "payload": {
    "sessions": [
      {
        "serverId": "srv-a",
        "sessionId": "0c6f4e25-5e3a-4d1e-8cb7-1ce5bbf6093f",
        "clienteId": 12,
        "usuario": "carlos",
        "ip": "192.168.1.10",
        "canales": [3, 8]
      }
    ]
  }
}""",
    "CLIENT_CONNECTED": """{
  "type": "CLIENT_CONNECTED",
  "origin": "srv-a",
  "payload": {
    "serverId": "srv-a",
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "clienteId": 12,
    "usuario": "carlos",
    "ip": "192.168.1.10",
    "canales": [3, 8]
  }
}""",
    "CLIENT_DISCONNECTED": """{
  "type": "CLIENT_DISCONNECTED",
  "origin": "srv-a",
  "payload": {
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "clienteId": 12
  }
}""",
    "CHANNEL_MEMBERSHIP": """{
  "type": "CHANNEL_MEMBERSHIP",
  "origin": "srv-a",
  "payload": {
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "clienteId": 12,
    "canalId": 3,
    "action": "JOIN"
  }
}""",
    "DIRECT_MESSAGE": """{
  "type": "DIRECT_MESSAGE",
  "origin": "srv-a",
  "payload": {
    "userId": 42,
    "message": {
      "command": "EVENT",
      "payload": {
        "evento": "NEW_MESSAGE",
        "mensajeId": 981,
        "contenido": "hola"
      }
    }
  }
}""",
    "CHANNEL_MESSAGE": """{
  "type": "CHANNEL_MESSAGE",
  "origin": "srv-a",
  "payload": {
    "canalId": 3,
    "message": {
      "command": "EVENT",
      "payload": {
        "evento": "NEW_CHANNEL_MESSAGE",
        "mensajeId": 982,
        "contenido": {
          "rutaArchivo": "media/audio/usuarios/3/rec_456.wav"
        }
      }
    }
  }
}""",
    "SESSION_MESSAGE": """{
  "type": "SESSION_MESSAGE",
  "origin": "srv-a",
  "payload": {
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "message": {
      "command": "EVENT",
      "payload": {
        "tipo": "ACK"
      }
    }
  }
}""",
    "BROADCAST": """{
  "type": "BROADCAST",
  "origin": "srv-a",
  "payload": {
    "message": {
      "command": "EVENT",
      "payload": {
        "tipo": "SERVER_ALERT",
        "mensaje": "El servidor srv-a entrará en mantenimiento"
      }
    }
  }
}""",
}

EXPECTED_CLASSES = {
    "HELLO": Hello,
    "SYNC_STATE": SyncState,
    "CLIENT_CONNECTED": ClientConnected,
    "CLIENT_DISCONNECTED": ClientDisconnected,
    "CHANNEL_MEMBERSHIP": ChannelMembership,
    "DIRECT_MESSAGE": DirectMessage,
    "CHANNEL_MESSAGE": ChannelMessage,
    "SESSION_MESSAGE": SessionMessage,
    "BROADCAST": Broadcast,
}

FORWARD_TYPES = ("DIRECT_MESSAGE", "CHANNEL_MESSAGE", "SESSION_MESSAGE", "BROADCAST")


def example(typeName: str) -> bytes:
    """The spec's example of C{typeName}, as UTF-8 bytes (multi-line)."""
    return SPEC_EXAMPLES[typeName].encode("utf-8")


def compact(typeName: str) -> bytes:
    """The spec's example of C{typeName} as one compact line."""
    return json.dumps(
        json.loads(SPEC_EXAMPLES[typeName]), ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def line(value: dict) -> bytes:
    """C{value} as one JSON line (no delimiter)."""
    return json.dumps(value).encode("utf-8")


def specDict(typeName: str) -> dict:
    """A fresh parsed copy of the spec's example of C{typeName}."""
    return json.loads(SPEC_EXAMPLES[typeName])


def encodedDict(message) -> dict:
    """Encode C{message}, check the framing, and parse the line back."""
    data = encode(message)
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    return json.loads(data)
