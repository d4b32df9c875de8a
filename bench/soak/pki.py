"""Real X.509 for the soak (Python cryptography): CAs the Admin API accepts, client leaves with
the clientAuth usage the gateway requires, the gateway's server certificate, and CRLs signed by
their CA. Every private key stays in the soak's work directory."""

import datetime
import hashlib
import os
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_serial_lock = threading.Lock()
_serial = [int.from_bytes(os.urandom(8), "big") | 1]


def _next_serial():
    with _serial_lock:
        _serial[0] += 1
        return _serial[0]


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Ca:
    """A CA certificate (P-256), valid from an hour ago for 30 days, with the extensions an
    upload needs (CA:TRUE, keyCertSign, a Subject Key Identifier)."""

    def __init__(self, name):
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(_next_serial())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _pem(self.cert)
        self._last_crl = now - datetime.timedelta(minutes=1)

    def _issue(self, name, usage, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(_next_serial())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=20))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())

    def leaf(self, directory, name):
        """A client certificate with clientAuth, written as NAME.pem and NAME.key."""
        key, cert = self._issue(name, ExtendedKeyUsageOID.CLIENT_AUTH)
        return Leaf(directory, name, key, cert)

    def server(self, directory):
        """The gateway's server certificate, for 127.0.0.1 and localhost."""
        import ipaddress

        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        key, cert = self._issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH, san)
        return Leaf(directory, "server", key, cert)

    def crl(self, serials):
        """A complete, direct CRL revoking SERIALS. Each one's thisUpdate is later than (or equal
        to) the previous one's, so the API never answers crl_outdated to this CA's own order."""
        now = _now() - datetime.timedelta(seconds=2)
        this_update = max(now, self._last_crl)
        self._last_crl = this_update
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(this_update)
            .next_update(this_update + datetime.timedelta(days=1))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .add_extension(x509.CRLNumber(_next_serial()), critical=False)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM).decode()


class Leaf:
    def __init__(self, directory, name, key, cert):
        self.name = name
        self.cert = cert
        self.serial = cert.serial_number
        der = cert.public_bytes(serialization.Encoding.DER)
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.pem = _pem(cert)
        self.cert_path = os.path.join(directory, name + ".pem")
        self.key_path = os.path.join(directory, name + ".key")
        with open(self.cert_path, "w") as f:
            f.write(self.pem)
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_key_pem(key))
