"""
The project's own process harness, for its integration tests and the soak run (not part of
the public L{portshare.testing}): the real C{twistd portshare} as a child process, and a
throw-away TLS certificate.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol


def selfSignedCertificate(directory: Any, hostname: str = "localhost") -> tuple[Any, Any]:
    """
    Write a fresh key and self-signed certificate for C{hostname} (and 127.0.0.1) into
    C{directory}; @return: their paths (key, certificate), for C{ssl:} endpoint strings.
    """
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    keyPath, certPath = directory / "key.pem", directory / "cert.pem"
    keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return keyPath, certPath


#: the bound address, in the text log or in a JSON log event
TWISTD_BOUND = re.compile(rb'(?:listening on |"address": ?")tcp:127\.0\.0\.1:(\d+)[\s"]')


class TwistdProcess(ProcessProtocol):
    """
    A C{twistd -n portshare} process: C{output} collects what it prints, C{listening} fires
    with its bound port, C{ended} with (exit code, signal).
    """

    #: what the process prints once it is bound; its group 1 is the port
    bound: re.Pattern[bytes] = TWISTD_BOUND

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[tuple[int | None, int | None]] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        found = self.bound.search(self.output)
        if found and not self.listening.called:
            self.listening.callback(int(found.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback((reason.value.exitCode, getattr(reason.value, "signal", None)))

    @property
    def stoppedCleanly(self) -> bool:
        """twistd shut down in order (since Twisted 23 it then ends itself with the signal)."""
        result = self.ended.result if self.ended.called else None
        return result in ((0, None), (None, 15)) and b"Server Shut Down." in self.output


def spawnTwistd(reactor: Any, directory: Any, *args: str) -> TwistdProcess:
    """
    Start C{twistd -n portshare --port tcp:0:interface=127.0.0.1 ARGS} in C{directory}, from
    the same installation (or checkout) of portshare as this process; its transport is
    C{process.transport}.
    """
    import os
    import sys
    from pathlib import Path

    import portshare

    twistd = str(Path(sys.executable).with_name("twistd"))
    env = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
    process = TwistdProcess()
    reactor.spawnProcess(
        process,
        twistd,
        [twistd, "-n", "--pidfile=", "portshare", "--port", "tcp:0:interface=127.0.0.1", *args],
        env=env,
        path=str(directory),
    )
    return process
