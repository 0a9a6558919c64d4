#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: tls_certificate
short_description: A self-signed TLS certificate and its private key for the server half
version_added: 0.2.0
description:
  - Makes a self-signed TLS server certificate, C(<name>.crt) (PEM, mode C(0644)), and its private
    key, C(<name>.key) (PEM, unencrypted PKCS#8, mode C(0600)), in the directory O(path), for the
    server half of the testbed (C(tcpscale server --tls-cert --tls-key)). Clients verify it by
    trusting the certificate itself as their CA (C(tcpscale client --tls-ca <name>.crt)).
  - Meant to run on the controller (C(delegate_to) V(localhost), C(run_once)); the role then copies
    both files to the servers.
  - An existing pair is kept when the key is the key of the certificate, the key type is
    O(key_type), the subject's common name is O(common_name), the certificate's subject alternative
    names are those of O(subject_alt_names) (compared as sets once normalised, in any order), and the
    certificate is still valid for at least 24 hours (or half of O(valid_days), when that is
    shorter). Otherwise, or with O(force=true), a new key and certificate are made. A pair put
    there by hand is kept as well when it meets these conditions.
  - A change of O(valid_days) alone does not make a new certificate; use O(force=true).
  - The modes of a kept pair are set to C(0644) and C(0600) when they differ.
  - Each file is written to a temporary file in O(path) and renamed over its target, the key first;
    the key is never readable by others, not even for a moment. A symlinked target stays a symlink
    (the file it points to is written).
  - No key material is ever returned or shown in the diff.
author:
  - scalelab.testbed developers (@scalelab)
requirements:
  - cryptography >= 3.1 on the host that runs the module (ansible-core depends on it, so the
    controller has it)
extends_documentation_fragment:
  - scalelab.testbed.testbed
options:
  path:
    description:
      - The directory to write the certificate and the key into. It must exist.
    type: path
    required: true
  name:
    description:
      - The stem of the file names, C(<name>.crt) and C(<name>.key).
      - Letters, digits, C(.), C(_) and C(-) only, not starting with C(.); at most 200 characters.
    type: str
    default: tcpscale
  common_name:
    description:
      - The common name (C(CN)) of the certificate's subject and issuer, 1 to 64 characters.
      - Clients check host names against O(subject_alt_names), not against the common name.
    type: str
    default: scalelab-testbed
  subject_alt_names:
    description:
      - The names clients reach the servers by. Each entry is an IPv4 or IPv6 address, which becomes
        an C(IPAddress) subject alternative name, or a DNS name (a leading C(*.) label for a
        wildcard), which becomes a C(DNSName) one. An C(IP:) or C(DNS:) prefix is accepted and forces
        the kind.
      - Normalised before they are compared and written (see RV(subject_alt_names)), addresses in
        their usual form (IPv6 compressed, in lower case), DNS names in lower case without a trailing
        dot; duplicates are dropped.
      - Kept certificates are compared by the set of names, so the order does not matter.
      - Non-ASCII DNS names must be given in their A-label form (C(xn--...)).
      - With no entry the certificate has no subject alternative name, and a client that checks the
        host name (Python's C(ssl) with C(check_hostname), Go, browsers) refuses it; give every name
        and address the clients connect to.
    type: list
    elements: str
    default: []
  key_type:
    description:
      - V(ec) makes an ECDSA key on the curve P-256 (C(secp256r1)), V(rsa) a 2048-bit RSA key.
      - The certificate is signed with SHA-256.
    type: str
    choices: [ec, rsa]
    default: ec
  valid_days:
    description:
      - How many days a new certificate is valid, 1 to 3650. It is valid from one hour before it is
        made, for clocks slightly behind the controller's.
    type: int
    default: 30
  force:
    description:
      - Make a new key and certificate even when the existing pair is current.
    type: bool
    default: false
notes:
  - With C(delegate_to) V(localhost), the module runs with the Python interpreter of the host
    C(localhost). When C(localhost) is in the inventory, that is the one interpreter discovery finds
    there, which may lack C(cryptography); set C(ansible_python_interpreter) to
    C({{ ansible_playbook_python }}) for it.
  - The certificate is a leaf (C(CA:FALSE), extended key usage C(serverAuth)); trusting it cannot
    make a client trust any other certificate made with its key.
  - When writing the certificate fails after the key was written, the next run finds that they do
    not match and makes a new pair.
seealso:
  - module: community.crypto.x509_certificate
    description: Certificates of every kind, signed by a CA of your own or by ACME.
attributes:
  check_mode:
    support: full
    details: Says whether a new pair would be made, and why; writes nothing.
  diff_mode:
    support: full
    details: The certificate (subject, subject alternative names, validity, SHA-256 fingerprint,
      mode) and the key (type, mode) before and after. Never key material.
  platform:
    platforms: posix
    details: Runs on the controller, with C(delegate_to) V(localhost).
'''

EXAMPLES = r'''
- name: A certificate for the server half, made on the controller
  scalelab.testbed.tls_certificate:
    path: "{{ playbook_dir }}/tls"
    subject_alt_names:
      - server.scalelab.test
      - 10.240.0.1
      - fd00:240::1
  delegate_to: localhost
  run_once: true
  register: tls

- name: Give the servers the key and the certificate
  ansible.builtin.copy:
    src: "{{ item.src }}"
    dest: "/etc/tcpscale/{{ item.src | basename }}"
    mode: "{{ item.mode }}"
  loop:
    - {src: "{{ tls.private_key }}", mode: "0600"}
    - {src: "{{ tls.certificate }}", mode: "0644"}

- name: An RSA key and a new certificate, whatever is there
  scalelab.testbed.tls_certificate:
    path: /srv/testbed/tls
    name: edge
    key_type: rsa
    valid_days: 7
    subject_alt_names: ["*.edge.scalelab.test"]
    force: true
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
certificate:
  description: The certificate file.
  returned: always
  type: str
  sample: /home/user/testbed/tls/tcpscale.crt
private_key:
  description: The private key file.
  returned: always
  type: str
  sample: /home/user/testbed/tls/tcpscale.key
fingerprint_sha256:
  description:
    - The SHA-256 fingerprint of the certificate (of its DER form), as colon-separated lower-case
      hex pairs.
    - C(null) in check mode when a new certificate would be made.
  returned: always
  type: str
  sample: "3b:9f:0c:...:e1"
not_after:
  description:
    - When the certificate expires, ISO 8601 in UTC.
    - In check mode, when a new certificate would be made, when it would expire.
  returned: always
  type: str
  sample: "2026-07-01T12:00:00Z"
subject_alt_names:
  description: O(subject_alt_names) as normalised, in the order given.
  returned: always
  type: list
  elements: str
  sample: ["server.scalelab.test", "10.240.0.1", "fd00:240::1"]
key_type:
  description: The key type, V(ec) or V(rsa).
  returned: always
  type: str
  sample: ec
reasons:
  description:
    - Why a new pair was made (or the modes set), or would be in check mode. Empty when nothing
      changed.
  returned: always
  type: list
  elements: str
  sample: ["subject_alt_names differ: the certificate lacks 10.240.0.2"]
'''

import datetime
import ipaddress
import os
import re
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, run_module)
from ansible_collections.scalelab.testbed.plugins.module_utils.files import write_atomic

try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

UTC = datetime.timezone.utc
CERT_MODE = 0o644
KEY_MODE = 0o600
KEY_TYPES = {'ec': 'ec (P-256)', 'rsa': 'rsa (2048 bits)'}
RSA_BITS = 2048
EC_CURVE = 'secp256r1'
VALID_DAYS_MIN = 1
VALID_DAYS_MAX = 3650
NAME_MAX = 200
COMMON_NAME_MAX = 64             # ub-common-name, RFC 5280
DNS_NAME_MAX = 253
BACKDATE = datetime.timedelta(hours=1)
RENEW_BEFORE = datetime.timedelta(hours=24)

_NAME_RE = re.compile(r'^[A-Za-z0-9_-][A-Za-z0-9._-]*\Z')
_LABEL_RE = re.compile(r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z')


# --- validation and normalisation (pure) --------------------------------------

def validate_name(name):
    """name when it is a safe file stem, else TestbedError naming the field."""
    if not name:
        raise TestbedError('name', 'an empty name is not allowed', 'give a file stem such as tcpscale')
    if len(name) > NAME_MAX:
        raise TestbedError('name', '%r is %d characters long, the limit is %d'
                           % (name, len(name), NAME_MAX), 'use a shorter name')
    if name.startswith('.'):
        raise TestbedError('name', '%r starts with "." (a hidden file)' % name,
                           'use a name that starts with a letter, a digit, "_" or "-"')
    if not _NAME_RE.match(name):
        raise TestbedError('name', '%r contains characters that are not allowed' % name,
                           'use only letters, digits, ".", "_" and "-"')
    return name


def validate_common_name(common_name):
    if not common_name or len(common_name) > COMMON_NAME_MAX:
        raise TestbedError('common_name', '%r is %d characters long; a common name has 1 to %d'
                           % (common_name, len(common_name or ''), COMMON_NAME_MAX),
                           'give a name of 1 to %d characters' % COMMON_NAME_MAX)
    if any(ord(c) < 32 or ord(c) == 127 for c in common_name):
        raise TestbedError('common_name', '%r contains control characters' % common_name,
                           'use printable characters only')
    return common_name


def validate_valid_days(days):
    if days is None or not VALID_DAYS_MIN <= days <= VALID_DAYS_MAX:
        raise TestbedError('valid_days', '%s is out of range' % days,
                           'give %d to %d days' % (VALID_DAYS_MIN, VALID_DAYS_MAX))
    return days


def _san_error(entry, message, fix):
    return TestbedError('subject_alt_names', 'entry %r: %s' % (entry, message), fix)


def _normalise_ip(entry, text):
    if '%' in text:
        raise _san_error(entry, 'an address with a zone (%...) cannot be in a certificate',
                         'give the address without the zone')
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise _san_error(entry, 'not an IPv4 or IPv6 address',
                         'give an address such as 10.240.0.1 or fd00::1')


def _normalise_dns(entry, text):
    fix = ('give a DNS name of labels of letters, digits and "-" (not at either end of a label), '
           'separated by ".", optionally starting with "*."')
    name = text.lower()
    if name.endswith('.'):
        name = name[:-1]
    if not name:
        raise _san_error(entry, 'an empty name is not allowed', fix)
    try:
        name.encode('ascii')
    except UnicodeEncodeError:
        raise _san_error(entry, 'not ASCII', 'give the A-label form of the name (xn--...)')
    if len(name) > DNS_NAME_MAX:
        raise _san_error(entry, 'longer than %d characters' % DNS_NAME_MAX, fix)
    labels = name.split('.')
    if labels[0] == '*':
        if len(labels) < 3:
            raise _san_error(entry, 'a wildcard needs at least two labels after "*."',
                             'give a name such as *.testbed.example')
        labels = labels[1:]
    for label in labels:
        if not _LABEL_RE.match(label):
            raise _san_error(entry, 'label %r is not a valid DNS label' % label, fix)
    if labels[-1].isdigit():
        raise _san_error(entry, 'neither an IP address nor a DNS name (its last label is a number)',
                         'give an IPv4 address of four numbers 0 to 255, or a DNS name')
    return name


def normalise_san(entry):
    """(kind, value) of one entry: ('ip', '10.0.0.1') or ('dns', 'name.example')."""
    if not isinstance(entry, str):
        raise _san_error(entry, 'not a string', 'give an IP address or a DNS name')
    text = entry.strip()
    prefix, sep, rest = text.partition(':')
    if sep and prefix.upper() == 'IP':
        return 'ip', _normalise_ip(entry, rest.strip())
    if sep and prefix.upper() == 'DNS':
        return 'dns', _normalise_dns(entry, rest.strip())
    if '%' in text:
        return 'ip', _normalise_ip(entry, text)
    if '/' in text:
        raise _san_error(entry, 'a prefix length or path is not allowed; a certificate names '
                         'addresses, not networks', 'give the address without "/..."')
    try:
        return 'ip', str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ':' in text:
        raise _san_error(entry, 'neither an IP address nor a DNS name (a name has no ":", an IPv6 '
                         'address is eight groups of hex digits)',
                         'give an address such as fd00::1, or a DNS name without a port')
    return 'dns', _normalise_dns(entry, text)


def normalise_sans(entries):
    """[(kind, value)] of subject_alt_names, duplicates dropped, order kept."""
    out = []
    for entry in entries or []:
        item = normalise_san(entry)
        if item not in out:
            out.append(item)
    return out


def renew_margin(valid_days):
    """How long a kept certificate must still be valid: 24 hours, or half its lifetime if shorter."""
    return min(RENEW_BEFORE, datetime.timedelta(days=valid_days) / 2)


def iso_utc(moment):
    return moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def reasons_to_renew(facts, desired, now):
    """Why the pair described by facts is not current; an empty list keeps it.

    facts: what certificate_facts() read from the pair on disk.
    desired: {'key_type', 'common_name', 'sans' ([(kind, value)]), 'valid_days', 'force'}.
    now: an aware datetime.
    """
    reasons = []
    if desired['force']:
        reasons.append('force=true')
    if not facts['key_matches']:
        reasons.append('the private key is not the key of the certificate')
    if facts['key_type'] != desired['key_type']:
        reasons.append('the key is %s, key_type asks for %s'
                       % (facts['key_type'], KEY_TYPES[desired['key_type']]))
    if facts['common_name'] != desired['common_name']:
        reasons.append('the common name is %r, common_name asks for %r'
                       % (facts['common_name'], desired['common_name']))
    have, want = set(facts['sans']), set(desired['sans'])
    if have != want:
        parts = []
        lacking = [value for kind, value in desired['sans'] if (kind, value) not in have]
        extra = [value for kind, value in facts['sans'] if (kind, value) not in want]
        if lacking:
            parts.append('the certificate lacks %s' % ', '.join(lacking))
        if extra:
            parts.append('the certificate has %s besides' % ', '.join(extra))
        reasons.append('subject_alt_names differ: %s' % '; '.join(parts))
    if facts['not_before'] > now:
        reasons.append('the certificate is not valid before %s' % iso_utc(facts['not_before']))
    margin = renew_margin(desired['valid_days'])
    if facts['not_after'] - now < margin:
        if facts['not_after'] <= now:
            reasons.append('the certificate expired at %s' % iso_utc(facts['not_after']))
        else:
            reasons.append('the certificate expires at %s, in less than %d hours'
                           % (iso_utc(facts['not_after']), margin.total_seconds() // 3600))
    return reasons


def mode_text(mode):
    return None if mode is None else '%04o' % mode


# --- reading and making certificates (cryptography, no files) -----------------

def key_type_of(public_key):
    """'ec' (P-256), 'rsa' (2048 bits), or what else the key is, in words."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return 'ec' if public_key.curve.name == EC_CURVE else 'ec (%s)' % public_key.curve.name
    if isinstance(public_key, rsa.RSAPublicKey):
        return 'rsa' if public_key.key_size == RSA_BITS else 'rsa (%d bits)' % public_key.key_size
    return type(public_key).__name__


def _spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _utc(cert, name):
    aware = getattr(cert, name + '_utc', None)     # cryptography >= 42
    if aware is not None:
        return aware
    return getattr(cert, name).replace(tzinfo=UTC)


def fingerprint(cert):
    digest = cert.fingerprint(hashes.SHA256())
    return ':'.join('%02x' % b for b in bytearray(digest))


def cert_sans(cert):
    """[(kind, value)] of the certificate's subject alternative names, normalised."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    out = []
    for general_name in ext.value:
        if isinstance(general_name, x509.DNSName):
            value = general_name.value.lower()
            out.append(('dns', value[:-1] if value.endswith('.') else value))
        elif isinstance(general_name, x509.IPAddress):
            out.append(('ip', str(general_name.value)))
        else:
            out.append(('other', '%s %s' % (type(general_name).__name__, general_name.value)))
    return out


def certificate_facts(cert, key):
    """What reasons_to_renew() needs of a certificate and a private key (parsed objects)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        'key_matches': _spki(cert.public_key()) == _spki(key.public_key()),
        'key_type': key_type_of(key.public_key()),
        'common_name': names[0].value if names else None,
        'sans': cert_sans(cert),
        'not_before': _utc(cert, 'not_valid_before'),
        'not_after': _utc(cert, 'not_valid_after'),
        'fingerprint_sha256': fingerprint(cert),
    }


def general_names(sans):
    return [x509.IPAddress(ipaddress.ip_address(v)) if kind == 'ip' else x509.DNSName(v)
            for kind, v in sans]


def make_pair(desired, now):
    """(private key, certificate): a new key and a self-signed leaf certificate for it."""
    if desired['key_type'] == 'rsa':
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, desired['common_name'])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=desired['valid_days']))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    if desired['sans']:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names(desired['sans'])),
                                        critical=False)
    return key, builder.sign(key, hashes.SHA256())


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


# --- files --------------------------------------------------------------------

def _read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def _mode(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


def read_pair(crt, key_path):
    """(facts, None) of the pair on disk, or (None, why it cannot be used)."""
    for path in (crt, key_path):
        if not os.path.lexists(path):
            return None, '%s does not exist' % path
        if not os.path.isfile(path):
            raise TestbedError('name', '%s exists and is not a regular file' % path,
                               'remove it, or give another name or path')
    try:
        cert = x509.load_pem_x509_certificate(_read_bytes(crt))
    except (ValueError, UnsupportedAlgorithm) as exc:
        return None, '%s is not a PEM certificate (%s)' % (crt, exc)
    try:
        key = serialization.load_pem_private_key(_read_bytes(key_path), password=None)
    except TypeError:
        return None, '%s is an encrypted private key' % key_path
    except (ValueError, UnsupportedAlgorithm) as exc:
        return None, '%s is not a PEM private key (%s)' % (key_path, exc)
    return certificate_facts(cert, key), None


def _cert_view(path, facts, mode):
    return {
        'path': path,
        'subject': 'CN=%s' % facts['common_name'],
        'subject_alt_names': [v for _k, v in facts['sans']],
        'not_before': iso_utc(facts['not_before']),
        'not_after': iso_utc(facts['not_after']),
        'fingerprint_sha256': facts['fingerprint_sha256'],
        'mode': mode_text(mode),
    }


def _key_view(path, facts, mode):
    return {'path': path, 'key_type': facts['key_type'], 'mode': mode_text(mode)}


def _desired(p):
    return {
        'key_type': p['key_type'],
        'common_name': validate_common_name(p['common_name']),
        'sans': normalise_sans(p['subject_alt_names']),
        'valid_days': validate_valid_days(p['valid_days']),
        'force': p['force'],
    }


def run(module):
    p = module.params
    directory = p['path']
    if not os.path.exists(directory):
        raise TestbedError('path', '%s does not exist' % directory,
                           'create the directory first (ansible.builtin.file, state=directory)')
    if not os.path.isdir(directory):
        raise TestbedError('path', '%s is not a directory' % directory, 'give a directory')
    name = validate_name(p['name'])
    desired = _desired(p)
    crt = os.path.join(directory, name + '.crt')
    key_path = os.path.join(directory, name + '.key')
    now = datetime.datetime.now(UTC)

    facts, problem = read_pair(crt, key_path)
    reasons = [problem] if problem else reasons_to_renew(facts, desired, now)
    before = {'certificate': None, 'private_key': None}
    if facts is not None:
        before = {'certificate': _cert_view(crt, facts, _mode(crt)),
                  'private_key': _key_view(key_path, facts, _mode(key_path))}
    renew = bool(reasons)
    chmods = []
    if not renew:
        chmods = [(f, m) for f, m in ((key_path, KEY_MODE), (crt, CERT_MODE)) if _mode(f) != m]
        reasons = ['the mode of %s is %s, sets %s' % (f, mode_text(_mode(f)), mode_text(m))
                   for f, m in chmods]
    if reasons and not os.access(directory, os.W_OK | os.X_OK):
        raise TestbedError('path', 'cannot write into %s as uid %d' % (directory, os.geteuid()),
                           'give a directory this user can write into, or become its owner')

    after = before
    if renew:
        if module.check_mode:
            planned = {'common_name': desired['common_name'], 'sans': desired['sans'],
                       'not_before': now - BACKDATE,
                       'not_after': now + datetime.timedelta(days=desired['valid_days']),
                       'fingerprint_sha256': None, 'key_type': desired['key_type']}
        else:
            key, cert = make_pair(desired, now)
            write_atomic(key_path, key_pem(key), KEY_MODE, module=module, exact_mode=True)
            write_atomic(crt, cert_pem(cert), CERT_MODE, module=module, exact_mode=True)
            planned = certificate_facts(cert, key)
        after = {'certificate': _cert_view(crt, planned, CERT_MODE),
                 'private_key': _key_view(key_path, planned, KEY_MODE)}
    elif chmods:
        if not module.check_mode:
            for f, m in chmods:
                os.chmod(f, m)
        after = {'certificate': dict(before['certificate'], mode=mode_text(CERT_MODE)),
                 'private_key': dict(before['private_key'], mode=mode_text(KEY_MODE))}

    result = {
        'changed': bool(reasons),
        'certificate': crt,
        'private_key': key_path,
        'fingerprint_sha256': after['certificate']['fingerprint_sha256'],
        'not_after': after['certificate']['not_after'],
        'subject_alt_names': [v for _k, v in desired['sans']],
        'key_type': desired['key_type'],
        'reasons': reasons,
    }
    if module._diff:
        result['diff'] = {'before': before, 'after': after}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            name=dict(type='str', default='tcpscale'),
            common_name=dict(type='str', default='scalelab-testbed'),
            subject_alt_names=dict(type='list', elements='str', default=[]),
            key_type=dict(type='str', choices=['ec', 'rsa'], default='ec'),
            valid_days=dict(type='int', default=30),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    if CRYPTOGRAPHY_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    run_module(module, run, what='the file system')


if __name__ == '__main__':
    main()
