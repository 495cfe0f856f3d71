"""
Certificates for the TLS tests: a cluster CA with good and hostile node
certificates, and the NodeConfig settings that load them.
"""

from __future__ import annotations

import datetime
import os

from clustersync.app import certificates
from clustersync.links import tls


def makeCerts(directory: str) -> dict:
    """
    A cluster CA with good certificates for srv-a and srv-b, plus hostile
    ones: srv-b from another CA, an expired srv-b, srv-x from the real CA,
    and srv-a valid only for the host C{a.example}.

    @return: name -> C{{"tlsCa", "tlsCert", "tlsKey"}} (NodeConfig settings).
    """
    good = certificates.initCertDir(directory, ["srv-a", "srv-b", "srv-c", "srv-x"])
    out = {name: settingsOf(paths) for name, paths in good.items()}
    caKey, caCert = certificates._loadCA(directory)

    def write(name, key, cert, ca=good["srv-a"]["tls_ca"]):
        certPath = os.path.join(directory, name + ".pem")
        keyPath = os.path.join(directory, name + ".key")
        certificates.writeCertificate(certPath, cert)
        certificates.writeKey(keyPath, key)
        out[name] = {"tlsCa": ca, "tlsCert": certPath, "tlsKey": keyPath}

    rogueKey, rogueCA = certificates.makeCA("rogue CA")
    write("rogue-b", *certificates.makeNodeCertificate(rogueKey, rogueCA, "srv-b"))
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    write(
        "expired-b",
        *certificates.makeNodeCertificate(
            caKey, caCert, "srv-b", notBefore=past, notAfter=past + datetime.timedelta(days=1)
        ),
    )
    write("elsewhere-e", *certificates.makeNodeCertificate(caKey, caCert, "srv-e", hosts=["e.example"]))
    return out


def settingsOf(paths: dict) -> dict:
    """The NodeConfig settings (C{tlsCa}, C{tlsCert}, C{tlsKey}) of C{tls_*} C{paths}."""
    return {"tlsCa": paths["tls_ca"], "tlsCert": paths["tls_cert"], "tlsKey": paths["tls_key"]}


def loadMaterial(settings: dict) -> tls.TLSMaterial:
    """The L{tls.TLSMaterial} of NodeConfig-style C{settings}."""
    return tls.loadTLSMaterial(settings["tlsCa"], settings["tlsCert"], settings["tlsKey"])

