# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates for the TLS tests, made with the cryptography library (a dependency of
ansible-core): a CA, and a server certificate it signs for given names and addresses."""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, data, mode):
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def make(directory, stem, sans=(), ca=None):
    """Write STEM.crt and STEM.key under directory: a CA (ca None) or a server
    certificate signed by ca ((crt path, key path)) for sans (addresses or names).
    Returns (crt path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = x509.CertificateBuilder().subject_name(_name(stem)).public_key(key.public_key()) \
        .serial_number(x509.random_serial_number()) \
        .not_valid_before(now - datetime.timedelta(minutes=5)) \
        .not_valid_after(now + datetime.timedelta(days=2))
    if ca is None:
        issuer, signer = _name(stem), key
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        with open(ca[0], 'rb') as f:
            issuer = x509.load_pem_x509_certificate(f.read()).subject
        with open(ca[1], 'rb') as f:
            signer = serialization.load_pem_private_key(f.read(), None)
        names = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    cert = builder.issuer_name(issuer).sign(signer, hashes.SHA256())
    crt, keyfile = os.path.join(directory, stem + '.crt'), os.path.join(directory, stem + '.key')
    _write(keyfile, key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return crt, keyfile
