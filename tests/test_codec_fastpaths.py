"""
Tests for the codec's fast paths: L{DirectEncoder} builds DIRECT_MESSAGE
lines by concatenation and L{decodeLines} decodes the lines of a read in one
call; both must give exactly what the typed codec gives.
"""

from __future__ import annotations

import json
import random

import msgspec
from twisted.trial import unittest

from clustersync.wire import codec
from clustersync.wire.codec import (
    MESSAGE_TYPES,
    DirectEncoder,
    DirectMessage,
    ProtocolError,
    decode,
    decodeLines,
    encode,
    messageBytes,
    rawMessage,
)

from tests.codecsupport import compact, line, specDict


class DirectEncoderTests(unittest.SynchronousTestCase):
    """
    The send hot path builds a DIRECT_MESSAGE line by concatenation
    (L{DirectEncoder}); it must be the very bytes the typed encoder writes.
    """

    def test_sameBytesAsEncode(self):
        """
        For origins needing escapes, ids at the Int64 bounds and messages of
        every JSON kind (a L{msgspec.Raw} with a newline included),
        L{DirectEncoder.encode} equals L{encode} of the L{DirectMessage},
        the first time and again from its kept prefix, and so does its
        C{prefix} + L{codec.encodeValue} + L{codec.DIRECT_SUFFIX} for a
        value that is not a L{msgspec.Raw}; the line decodes back to the
        same routing and message.
        """
        origins = ["srv-a", 'sr"v\\é', "\u2603 \t"]
        ids = [0, 7, -1, 2**63 - 1, -(2**63)]
        values = [{"t": 1, "p": "x\ny"}, "hola", 42, None, [1, {"a": []}], 1.5, True,
                  msgspec.Raw(b'{"a":\n1}')]
        for origin in origins:
            encoder = DirectEncoder(origin)
            for userId in ids:
                for value in values:
                    expected = encode(DirectMessage(origin, codec.DirectMessagePayload(
                        userId, rawMessage(value))))
                    for attempt in ("first", "kept"):
                        line = encoder.encode(userId, value)
                        self.assertEqual(line, expected, (origin, userId, value, attempt))
                    if not isinstance(value, msgspec.Raw):
                        # The way a caller that keeps the prefix builds the line.
                        self.assertEqual(encoder.prefix(userId) + codec.encodeValue(value)
                                         + codec.DIRECT_SUFFIX, expected)
                    back = decode(line[:-1])
                    self.assertEqual((back.origin, back.payload.userId), (origin, userId))
                    self.assertEqual(bytes(back.payload.message), bytes(rawMessage(value)))

    def test_prefixesKeptUpToCacheSize(self):
        """
        L{DirectEncoder} keeps at most C{cacheSize} users' prefixes: the one
        after that starts the cache afresh, and every line stays right.
        """
        encoder = DirectEncoder("a", cacheSize=3)
        for userId in (1, 2, 3):
            encoder.encode(userId, 0)
        self.assertEqual(sorted(encoder._prefixes), [1, 2, 3])
        self.assertIs(encoder.prefix(2), encoder.prefix(2))
        line = encoder.encode(4, 0)
        self.assertEqual(sorted(encoder._prefixes), [4])
        self.assertEqual(line, encode(DirectMessage(
            "a", codec.DirectMessagePayload(4, rawMessage(0)))))
        self.assertEqual(encoder.encode(1, 0), encode(DirectMessage(
            "a", codec.DirectMessagePayload(1, rawMessage(0)))))
        self.assertEqual(sorted(encoder._prefixes), [1, 4])

    def test_messageBytesRefusesWhatRawMessageRefuses(self):
        """
        A value JSON cannot hold is a C{TypeError} from all three, and the
        encoder writes the right line for the next value.
        """
        encoder = DirectEncoder("a")
        for value in (object(), {1j: 2}, {"a": {1, 2}.__iter__()}):
            self.assertRaises(TypeError, messageBytes, value)
            self.assertRaises(TypeError, rawMessage, value)
            e = self.assertRaises(TypeError, encoder.encode, 1, value)
            self.assertIn("not JSON-serialisable", str(e))
        self.assertEqual(encoder.encode(1, "ok"), encode(DirectMessage(
            "a", codec.DirectMessagePayload(1, rawMessage("ok")))))


def perLine(lines: list[bytes]) -> list | None:
    """What L{decode} gives for each line, or C{None} if one fails."""
    try:
        return [decode(one) for one in lines]
    except ProtocolError:
        return None


class DecodeLinesTests(unittest.SynchronousTestCase):
    """
    L{decodeLines} decodes the lines of a read in one call; it must give
    what L{decode} gives line by line, or C{None} (decode them one by one).
    """

    def validLines(self) -> list[bytes]:
        """Every spec example, compact, plus a non-ASCII and a spaced one."""
        lines = [compact(name) for name in MESSAGE_TYPES]
        lines.append(encode(DirectMessage("srv-\u00e9", codec.DirectMessagePayload(
            7, rawMessage({"texto": "canci\u00f3n \u2603"}))))[:-1])
        lines.append(json.dumps(specDict("HELLO")).encode())  # ", " and ": "
        return lines

    def test_sameAsDecode(self) -> None:
        """Valid lines, in any number, decode to what L{decode} gives."""
        lines = self.validLines()
        for count in (1, 2, len(lines)):
            got = decodeLines(lines[:count])
            self.assertIsNotNone(got)
            self.assertEqual(got, perLine(lines[:count]))
        self.assertEqual(decodeLines(lines * 50), perLine(lines * 50))

    def test_notPlainIsNone(self) -> None:
        """
        Lines that are not all plain (CR, blank, outer whitespace, not an
        object) are left to L{decode}, even when each would decode.
        """
        hello = compact("HELLO")
        for lines in ([hello + b"\r"], [hello, b"", hello], [b" " + hello], [hello + b" "],
                      [b"[1]"], [hello, b"[1]"], []):
            self.assertIsNone(decodeLines(lines), lines)

    def test_oneBadLineIsNone(self) -> None:
        """One line that does not decode, or not as UTF-8, makes it C{None}."""
        hello = compact("HELLO")
        bad = [
            b'{"type":"HELLO","origin":"a"}',
            b'{"type":"NOPE","origin":"a","payload":{}}',
            b'{"type":"HELLO","origin":"\xff","payload":{"serverId":"a"}}',
            b'{"type":"HELLO","origin":"a","payload":{"serverId":"a"}',
            b"{" * 5000 + b"}" * 5000,
        ]
        for one in bad:
            self.assertIsNone(perLine([one]), one)
            self.assertIsNone(decodeLines([hello, one, hello]), one)

    def test_valuesAcrossLinesNeverPass(self) -> None:
        """
        Lines that are each invalid, but whose JSON values could pair up
        to as many values as lines (one value over two lines, two values
        on one), are refused: one value per line is all that passes.
        """
        hello = compact("HELLO")
        opened = hello[: hello.index(b'"payload":') + len(b'"payload":')]
        rest = hello[len(opened):]
        paired = [
            [opened, rest, hello + b" " + hello],
            [hello[:-1], b"}", hello + b" " + hello],
            [opened, rest + b" " + hello, hello[:-1], b"} " + hello],
        ]
        for lines in paired:
            # Decoded as a whole, they make one value per line...
            self.assertEqual(len(codec._decoder.decode_lines(b"\n".join(lines))), len(lines))
            # ...but no line is a message of its own.
            for one in lines:
                self.assertIsNone(perLine([one]), one)
            self.assertIsNone(decodeLines(lines), lines)
        for lines in ([hello + b"," + hello], [hello + hello], [hello + b" " + hello]):
            self.assertIsNone(decodeLines(lines), lines)

    def test_fuzzAgreesWithDecode(self) -> None:
        """
        Random edits of valid reads (the bytes JSON structure is made of)
        never make L{decodeLines} disagree with L{decode}: it gives their
        results when every line decodes, else C{None}.
        """
        rng = random.Random(20261129)
        pieces = [b"{", b"}", b"[", b"]", b'"', b",", b":", b" ", b"\n", b"\r", b"1", b"\xc3\xa9"]
        valid = b"\n".join(self.validLines())
        decoded = refused = 0
        for _ in range(3000):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(data))
                if rng.random() < 0.5:
                    del data[at]
                else:
                    data[at:at] = rng.choice(pieces)
            lines = bytes(data).split(b"\n")
            got = decodeLines(lines)
            if got is None:
                refused += 1
            else:
                decoded += 1
                self.assertEqual(got, perLine(lines), lines)
        self.assertGreater(refused, 0)
        self.assertGreater(decoded, 0)
