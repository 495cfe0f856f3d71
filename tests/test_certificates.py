"""
Tests for L{clustersync.app.certificates} and the C{clustersync-certs}
command (L{clustersync.cli.certs}): the files they write, the certificates
in them, and the certificates C{make cluster} keeps.
"""

from __future__ import annotations

import io
import os
import stat
import tomllib
from contextlib import redirect_stdout

from cryptography import x509
from twisted.trial import unittest

from clustersync.app import certificates
from clustersync.app.config import loadConfig
from clustersync.cli import certs
from clustersync.links import security, tls

from tests.certsupport import loadMaterial, settingsOf


class CertificateToolTests(unittest.TestCase):
    """
    L{certificates.initCertDir}, L{certificates.addNode},
    L{certificates.ensureDevCerts} and the C{clustersync-certs} command.
    """

    def test_initWritesCAAndNodes(self):
        """
        C{clustersync-certs init} writes a CA and a key and certificate per
        node: keys readable by their owner only, each certificate naming its
        serverId (CN and SAN) and the loopback host names, signed by the CA.
        """
        directory = self.mktemp()
        out = io.StringIO()
        with redirect_stdout(out):
            rc = certs.main(["init", directory, "--nodes", "srv-a", "srv-b",
                           "--host", "srv-a=a.lan,10.1.2.3"])
        self.assertEqual(rc, 0)
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["ca.key", "ca.pem", "srv-a.key", "srv-a.pem", "srv-b.key", "srv-b.pem"],
        )
        for name in ("ca.key", "srv-a.key", "srv-b.key"):
            mode = stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode)
            self.assertEqual(mode, 0o600, name)
        self.assertIn('tls_cert = "' + os.path.abspath(os.path.join(directory, "srv-a.pem")), out.getvalue())
        with open(os.path.join(directory, "srv-a.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(tls.certificateIdentity(cert), "srv-a")
        names = {str(n.value) for n in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value}
        self.assertEqual(names, {"srv-a", "a.lan", "10.1.2.3"})
        with open(os.path.join(directory, "srv-b.pem"), "rb") as f:
            certB = x509.load_pem_x509_certificate(f.read())
        self.assertIn("127.0.0.1", {str(n.value) for n in certB.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value})
        material = tls.loadTLSMaterial(*(os.path.join(directory, n) for n in ("ca.pem", "srv-b.pem", "srv-b.key")))
        self.assertEqual(material.identity, "srv-b")

    def test_initRefusesToReplaceCA(self):
        """
        A second C{init} in the same directory fails (exit 1) without
        touching the CA, unless C{--force}.
        """
        directory = self.mktemp()
        with redirect_stdout(io.StringIO()):
            self.assertEqual(certs.main(["init", directory, "--nodes", "srv-a"]), 0)
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            before = f.read()
        err = io.StringIO()
        import sys
        self.patch(sys, "stderr", err)
        with redirect_stdout(io.StringIO()):
            self.assertEqual(certs.main(["init", directory, "--nodes", "srv-a"]), 1)
        self.assertIn("--force", err.getvalue())
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            self.assertEqual(f.read(), before)
        with redirect_stdout(io.StringIO()):
            self.assertEqual(certs.main(["init", directory, "--nodes", "srv-a", "--force"]), 0)
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            self.assertNotEqual(f.read(), before)

    def test_addAndShow(self):
        """
        C{add} signs one more node with the existing CA; C{show} lists every
        certificate with its CN.
        """
        directory = self.mktemp()
        with redirect_stdout(io.StringIO()):
            certs.main(["init", directory, "--nodes", "srv-a"])
            self.assertEqual(certs.main(["add", directory, "srv-d"]), 0)
        material = tls.loadTLSMaterial(*(os.path.join(directory, n) for n in ("ca.pem", "srv-d.pem", "srv-d.key")))
        self.assertEqual(material.identity, "srv-d")
        out = io.StringIO()
        with redirect_stdout(out):
            certs.main(["show", directory])
        self.assertIn("srv-d.pem: CN=srv-d", out.getvalue())
        self.assertIn("ca.pem: CN=clustersync cluster CA", out.getvalue())

    def test_badServerIdRefused(self):
        """A serverId that cannot be a file name is refused."""
        self.assertRaises(ValueError, certificates.initCertDir, self.mktemp(), ["../etc/x"])

    def test_ensureDevCertsIdempotent(self):
        """
        L{certificates.ensureDevCerts} creates what is missing, keeps usable files
        on a second call, and replaces a node certificate that no longer
        matches the CA.
        """
        directory = self.mktemp()
        first = certificates.ensureDevCerts(directory, ["srv-a", "srv-b"])
        self.assertEqual(set(first), {"srv-a", "srv-b"})
        self.assertEqual(set(first["srv-a"]), {"tls_ca", "tls_cert", "tls_key"})
        with open(first["srv-a"]["tls_cert"], "rb") as f:
            certA = f.read()
        second = certificates.ensureDevCerts(directory, ["srv-a", "srv-b", "srv-c"])
        self.assertEqual(second["srv-a"], first["srv-a"])
        with open(second["srv-a"]["tls_cert"], "rb") as f:
            self.assertEqual(f.read(), certA)
        self.assertTrue(os.path.exists(second["srv-c"]["tls_key"]))
        # A certificate for another identity in srv-b's files is replaced.
        os.replace(second["srv-c"]["tls_cert"], second["srv-b"]["tls_cert"])
        os.replace(second["srv-c"]["tls_key"], second["srv-b"]["tls_key"])
        third = certificates.ensureDevCerts(directory, ["srv-b"])
        self.assertEqual(loadMaterial(settingsOf(third["srv-b"])).identity, "srv-b")

    def test_devClusterSettings(self):
        """
        L{certificates.devClusterSettings} gives each C{make cluster} node
        an ssl: peer port and its TLS files, which load as a valid
        configuration.
        """
        directory = self.mktemp()
        settings = certificates.devClusterSettings(directory, {"srv-a": (7101, 7201), "srv-b": (7102, 7202)})
        self.assertEqual(settings["srv-a"]["listen"], "ssl:7101:interface=127.0.0.1")
        config = loadConfig(None, {"server_id": "srv-b", **settings["srv-b"]})
        self.assertEqual(security.LinkSecurity.fromConfig(config).mode, security.TLS)
        self.assertNotIn("listen", certificates.devClusterSettings(directory, ["srv-c"])["srv-c"])

    def test_consoleScript(self):
        """
        The C{clustersync-certs} console script of C{pyproject.toml} runs
        L{certs.main}.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            scripts = tomllib.load(f)["project"]["scripts"]
        module, _, name = scripts["clustersync-certs"].partition(":")
        self.assertEqual((module, name), (certs.__name__, "main"))
