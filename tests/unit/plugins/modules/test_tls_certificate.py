# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.tls_certificate: the pure rules, then main() on real files in tmp_path.

No root needed. The certificates made are loaded by Python's ssl and used for
real TLS handshakes over socket pairs.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import stat
import threading

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError as SpecError
from ansible_collections.scalelab.testbed.plugins.modules import tls_certificate as tc

from modlib import call

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
SANS = ['server.scalelab.test', '10.240.0.1', 'fd00:240::1']


# --- subject alternative names ------------------------------------------------

def test_sans_are_normalised_deduplicated_and_kept_in_order():
    got = tc.normalise_sans(['Server.Scalelab.Test.', '10.240.0.1', 'FD00:0240:0:0:0:0:0:1',
                             'server.scalelab.test', 'DNS:*.edge.scalelab.test', 'ip: 10.240.0.2',
                             ' 10.240.0.1 '])
    assert got == [('dns', 'server.scalelab.test'), ('ip', '10.240.0.1'), ('ip', 'fd00:240::1'),
                   ('dns', '*.edge.scalelab.test'), ('ip', '10.240.0.2')]
    assert tc.normalise_sans([]) == [] and tc.normalise_sans(None) == []


@pytest.mark.parametrize('entry, words', [
    ('', 'empty'),
    ('under_score.test', 'not a valid DNS label'),
    ('-lead.test', 'not a valid DNS label'),
    ('a..b.test', 'not a valid DNS label'),
    ('a.*.test', 'not a valid DNS label'),
    ('*.test', 'two labels after'),
    ('x' * 64 + '.test', 'not a valid DNS label'),
    ('.'.join(['abcdefghi'] * 26), 'longer than 253'),
    ('10.240.0.256', 'neither an IP address nor a DNS name'),
    ('10.240.0', 'neither an IP address nor a DNS name'),
    ('server.test:443', 'neither an IP address nor a DNS name'),
    ('fe80::1%eth0', 'zone'),
    ('10.240.0.1/24', 'not networks'),
    ('fd00::1/64', 'not networks'),
    ('IP:server.test', 'not an IPv4 or IPv6 address'),
    ('DNS:10.240.0.1', 'its last label is a number'),
    (u'b\u00fccher.test', 'xn--'),
])
def test_a_bad_san_names_the_field_and_the_entry(entry, words):
    with pytest.raises(SpecError) as info:
        tc.normalise_sans(['ok.test', entry])
    assert info.value.field == 'subject_alt_names'
    assert repr(entry) in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize('name', ['tcpscale', 'edge-1.v2', 'a_b', '-dash'])
def test_good_names(name):
    assert tc.validate_name(name) == name


@pytest.mark.parametrize('name, words', [
    ('', 'empty'), ('.hidden', 'starts with "."'), ('a/b', 'not allowed'), ('a b', 'not allowed'),
    ('a$b', 'not allowed'), ('x' * 201, 'limit is 200'),
])
def test_bad_names(name, words):
    with pytest.raises(SpecError) as info:
        tc.validate_name(name)
    assert info.value.field == 'name' and words in str(info.value)


def test_common_name_and_valid_days_ranges():
    assert tc.validate_common_name('x' * 64) == 'x' * 64
    for bad in ('', 'x' * 65, 'a\nb'):
        with pytest.raises(SpecError) as info:
            tc.validate_common_name(bad)
        assert info.value.field == 'common_name'
    assert tc.validate_valid_days(1) == 1 and tc.validate_valid_days(3650) == 3650
    for bad in (0, 3651, -1, None):
        with pytest.raises(SpecError) as info:
            tc.validate_valid_days(bad)
        assert info.value.field == 'valid_days' and '1 to 3650' in str(info.value)


# --- the "is it current" decision ----------------------------------------------

def desired(**over):
    d = {'key_type': 'ec', 'common_name': 'scalelab-testbed', 'sans': tc.normalise_sans(SANS),
         'valid_days': 30, 'force': False}
    d.update(over)
    return d


def facts(**over):
    f = {'key_matches': True, 'key_type': 'ec', 'common_name': 'scalelab-testbed',
         'sans': tc.normalise_sans(list(reversed(SANS))),
         'not_before': NOW - datetime.timedelta(days=1),
         'not_after': NOW + datetime.timedelta(days=20), 'fingerprint_sha256': 'aa'}
    f.update(over)
    return f


def test_a_current_pair_is_kept_whatever_the_order_of_the_sans():
    assert tc.reasons_to_renew(facts(), desired(), NOW) == []


@pytest.mark.parametrize('fact, want, words', [
    ({'key_matches': False}, {}, 'not the key of the certificate'),
    ({'key_type': 'rsa'}, {}, 'the key is rsa, key_type asks for ec (P-256)'),
    ({'key_type': 'ec (secp384r1)'}, {}, 'key_type asks for ec'),
    ({}, {'key_type': 'rsa'}, 'key_type asks for rsa (2048 bits)'),
    ({'common_name': 'other'}, {}, "the common name is 'other'"),
    ({}, {'sans': tc.normalise_sans(SANS + ['10.240.0.2'])}, 'the certificate lacks 10.240.0.2'),
    ({'sans': tc.normalise_sans(SANS[:1])}, {}, 'lacks 10.240.0.1, fd00:240::1'),
    ({'sans': tc.normalise_sans(SANS) + [('other', 'UniformResourceIdentifier x')]}, {},
     'has UniformResourceIdentifier x besides'),
    ({}, {'force': True}, 'force=true'),
    ({'not_before': NOW + datetime.timedelta(minutes=5)}, {}, 'not valid before 2026-06-01T12:05:00Z'),
    ({'not_after': NOW - datetime.timedelta(seconds=1)}, {}, 'expired at 2026-06-01T11:59:59Z'),
    ({'not_after': NOW + datetime.timedelta(hours=23)}, {}, 'in less than 24 hours'),
])
def test_what_makes_a_new_pair(fact, want, words):
    reasons = tc.reasons_to_renew(facts(**fact), desired(**want), NOW)
    assert len(reasons) == 1 and words in reasons[0], reasons


def test_the_margin_is_24_hours_or_half_the_lifetime():
    assert tc.renew_margin(30) == datetime.timedelta(hours=24)
    assert tc.renew_margin(2) == datetime.timedelta(hours=24)
    assert tc.renew_margin(1) == datetime.timedelta(hours=12)
    assert tc.reasons_to_renew(facts(not_after=NOW + datetime.timedelta(hours=25)), desired(), NOW) == []
    short = desired(valid_days=1)
    assert tc.reasons_to_renew(facts(not_after=NOW + datetime.timedelta(hours=13)), short, NOW) == []
    assert 'less than 12 hours' in tc.reasons_to_renew(
        facts(not_after=NOW + datetime.timedelta(hours=11)), short, NOW)[0]


@pytest.mark.parametrize('key_type, described', [('ec', 'ec'), ('rsa', 'rsa')])
def test_a_new_pair_is_current_by_its_own_facts(key_type, described):
    want = desired(key_type=key_type)
    key, cert = tc.make_pair(want, NOW)
    got = tc.certificate_facts(cert, key)
    assert got['key_type'] == described and got['key_matches']
    assert got['not_before'] == NOW - datetime.timedelta(hours=1)
    assert got['not_after'] == NOW + datetime.timedelta(days=30)
    assert got['sans'] == want['sans'] and got['common_name'] == 'scalelab-testbed'
    assert tc.reasons_to_renew(got, want, NOW) == []
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    other, _cert = tc.make_pair(want, NOW)
    assert not tc.certificate_facts(cert, other)['key_matches']


def test_other_keys_are_described():
    assert tc.key_type_of(ec.generate_private_key(ec.SECP384R1()).public_key()) == 'ec (secp384r1)'


# --- the module, on files ---------------------------------------------------------

def run(tmp_path, **args):
    args.setdefault('path', str(tmp_path))
    args.setdefault('subject_alt_names', SANS)
    return call(tc.main, **args)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def file_fingerprint(path):
    with open(path, 'rb') as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return tc.fingerprint(cert)


def test_create_then_nothing_to_do(tmp_path):
    failed, r = run(tmp_path)
    assert not failed and r['changed'], r
    crt, key = str(tmp_path / 'tcpscale.crt'), str(tmp_path / 'tcpscale.key')
    assert (r['certificate'], r['private_key']) == (crt, key)
    assert mode(crt) == 0o644 and mode(key) == 0o600
    assert sorted(os.listdir(str(tmp_path))) == ['tcpscale.crt', 'tcpscale.key']    # no temp file left
    with open(key, 'rb') as f:
        pem = f.read()
    assert pem.startswith(b'-----BEGIN PRIVATE KEY-----')      # PKCS#8, unencrypted
    assert serialization.load_pem_private_key(pem, password=None)
    assert r['fingerprint_sha256'] == file_fingerprint(crt)
    assert r['subject_alt_names'] == SANS and r['key_type'] == 'ec'
    assert r['reasons'] == ['%s does not exist' % crt]
    expires = datetime.datetime.strptime(r['not_after'], '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=UTC)
    left = expires - datetime.datetime.now(UTC)
    assert datetime.timedelta(days=29, hours=23) < left <= datetime.timedelta(days=30)

    mtimes = (os.stat(crt).st_mtime_ns, os.stat(key).st_mtime_ns)
    failed, again = run(tmp_path, subject_alt_names=list(reversed(SANS)))
    assert not failed and not again['changed'] and again['reasons'] == []
    assert again['fingerprint_sha256'] == r['fingerprint_sha256'] and again['not_after'] == r['not_after']
    assert (os.stat(crt).st_mtime_ns, os.stat(key).st_mtime_ns) == mtimes


def test_check_mode_writes_nothing(tmp_path):
    failed, r = run(tmp_path, _ansible_check_mode=True, _ansible_diff=True)
    assert not failed and r['changed'] and r['fingerprint_sha256'] is None and r['not_after']
    assert os.listdir(str(tmp_path)) == []
    assert r['diff']['before'] == {'certificate': None, 'private_key': None}
    assert r['diff']['after']['certificate']['subject_alt_names'] == SANS
    run(tmp_path)
    failed, r = run(tmp_path, _ansible_check_mode=True, subject_alt_names=['other.test'])
    assert not failed and r['changed'] and r['fingerprint_sha256'] is None
    assert file_fingerprint(str(tmp_path / 'tcpscale.crt')) != r['fingerprint_sha256']
    failed, r = run(tmp_path, _ansible_check_mode=True)
    assert not failed and not r['changed'] and r['fingerprint_sha256']


def test_diff_and_return_values_carry_no_key_material(tmp_path):
    failed, r = run(tmp_path, _ansible_diff=True)
    assert not failed
    with open(str(tmp_path / 'tcpscale.key')) as f:
        body = ''.join(f.read().splitlines()[1:-1])
    text = json.dumps(r)
    assert 'PRIVATE KEY' not in text and body[:40] not in text
    after = r['diff']['after']
    assert after['certificate']['subject'] == 'CN=scalelab-testbed'
    assert after['certificate']['fingerprint_sha256'] == r['fingerprint_sha256']
    assert after['private_key'] == {'path': r['private_key'], 'key_type': 'ec', 'mode': '0600'}
    failed, r2 = run(tmp_path, _ansible_diff=True, subject_alt_names=SANS[:1])
    assert r2['changed'] and r2['diff']['before'] == after and r2['diff']['before'] != r2['diff']['after']


def test_a_san_change_makes_a_new_pair(tmp_path):
    _f, first = run(tmp_path)
    failed, r = run(tmp_path, subject_alt_names=SANS + ['10.240.0.2'])
    assert not failed and r['changed'] and r['fingerprint_sha256'] != first['fingerprint_sha256']
    assert r['reasons'] == ['subject_alt_names differ: the certificate lacks 10.240.0.2']
    failed, r = run(tmp_path, subject_alt_names=SANS + ['10.240.0.2'])
    assert not failed and not r['changed']


def test_a_key_that_is_not_the_certificates_makes_a_new_pair(tmp_path):
    run(tmp_path)
    other = tmp_path / 'other'
    other.mkdir()
    run(tmp_path, path=str(other))
    os.replace(str(other / 'tcpscale.key'), str(tmp_path / 'tcpscale.key'))
    failed, r = run(tmp_path)
    assert not failed and r['changed'] and r['reasons'] == ['the private key is not the key of the certificate']
    failed, r = run(tmp_path)
    assert not failed and not r['changed']


def test_key_type_change_force_and_garbage(tmp_path):
    _f, first = run(tmp_path)
    failed, r = run(tmp_path, key_type='rsa')
    assert not failed and r['changed'] and 'key_type asks for rsa' in r['reasons'][0]
    with open(str(tmp_path / 'tcpscale.key'), 'rb') as f:
        assert tc.key_type_of(serialization.load_pem_private_key(f.read(), None).public_key()) == 'rsa'
    assert not run(tmp_path, key_type='rsa')[1]['changed']
    failed, r = run(tmp_path, key_type='rsa', force=True)
    assert not failed and r['changed'] and r['reasons'] == ['force=true']
    (tmp_path / 'tcpscale.crt').write_text('not a certificate\n')
    failed, r = run(tmp_path)
    assert not failed and r['changed'] and 'is not a PEM certificate' in r['reasons'][0]
    assert not run(tmp_path)[1]['changed']


def test_a_short_lived_certificate_is_renewed_by_a_longer_request(tmp_path):
    run(tmp_path, valid_days=1)
    assert not run(tmp_path, valid_days=1)[1]['changed']       # 24 h left, 12 h needed
    failed, r = run(tmp_path, valid_days=30)                    # under 24 h left, 24 h needed
    assert not failed and r['changed'] and 'in less than 24 hours' in r['reasons'][0]


def test_wrong_modes_are_set_without_a_new_pair(tmp_path):
    _f, first = run(tmp_path)
    key = str(tmp_path / 'tcpscale.key')
    os.chmod(key, 0o644)
    failed, r = run(tmp_path, _ansible_check_mode=True)
    assert not failed and r['changed'] and mode(key) == 0o644
    failed, r = run(tmp_path)
    assert not failed and r['changed'] and r['reasons'] == ['the mode of %s is 0644, sets 0600' % key]
    assert mode(key) == 0o600 and r['fingerprint_sha256'] == first['fingerprint_sha256']


def test_a_new_key_replacing_a_readable_one_is_not_readable(tmp_path):
    run(tmp_path)
    key = str(tmp_path / 'tcpscale.key')
    os.chmod(key, 0o644)
    failed, r = run(tmp_path, subject_alt_names=['other.test'])
    assert not failed and r['changed'] and mode(key) == 0o600


def test_a_symlinked_certificate_stays_a_symlink(tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    run(tmp_path, path=str(real))
    os.symlink(str(real / 'tcpscale.crt'), str(tmp_path / 'tcpscale.crt'))
    os.symlink(str(real / 'tcpscale.key'), str(tmp_path / 'tcpscale.key'))
    assert not run(tmp_path)[1]['changed']
    failed, r = run(tmp_path, subject_alt_names=['other.test'])
    assert not failed and r['changed'] and os.path.islink(str(tmp_path / 'tcpscale.crt'))
    assert file_fingerprint(str(real / 'tcpscale.crt')) == r['fingerprint_sha256']


@pytest.mark.parametrize('args, field, words', [
    ({'name': '.hidden'}, 'name', 'starts with "."'),
    ({'name': 'a/../up'}, 'name', 'not allowed'),
    ({'subject_alt_names': ['ok.test', 'bad_name.test']}, 'subject_alt_names', "'bad_name.test'"),
    ({'valid_days': 0}, 'valid_days', '1 to 3650'),
    ({'common_name': 'x' * 65}, 'common_name', '1 to 64'),
])
def test_bad_options_fail_naming_the_field(tmp_path, args, field, words):
    failed, r = run(tmp_path, **args)
    assert failed and r['field'] == field and r['msg'].startswith(field + ': ') and words in r['msg'], r
    assert 'nothing was changed' in r['msg'] and os.listdir(str(tmp_path)) == []


def test_a_missing_directory_fails_naming_path(tmp_path):
    failed, r = run(tmp_path, path=str(tmp_path / 'missing'))
    assert failed and r['field'] == 'path' and 'does not exist' in r['msg'] and 'state=directory' in r['msg']
    (tmp_path / 'file').write_text('')
    failed, r = run(tmp_path, path=str(tmp_path / 'file'))
    assert failed and r['field'] == 'path' and 'is not a directory' in r['msg']


def test_a_directory_in_the_way_fails_naming_name(tmp_path):
    (tmp_path / 'tcpscale.crt').mkdir()
    (tmp_path / 'tcpscale.key').write_text('')
    failed, r = run(tmp_path)
    assert failed and r['field'] == 'name' and 'not a regular file' in r['msg']


def test_without_cryptography_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(tc, 'CRYPTOGRAPHY_IMPORT_ERROR', 'Traceback: ImportError: cryptography')
    failed, r = run(tmp_path)
    assert failed and 'cryptography' in r['msg'] and os.listdir(str(tmp_path)) == []


# --- the certificate, used by Python's ssl -------------------------------------

def handshake(crt, key, server_hostname):
    """A real TLS handshake over a socket pair; the client trusts crt as its CA."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(crt, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(crt)
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    errors = []

    def serve():
        try:
            with server.wrap_socket(a, server_side=True) as tls:
                tls.sendall(tls.recv(5))
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(b, server_hostname=server_hostname) as tls:
            tls.sendall(b'hello')
            assert tls.recv(5) == b'hello'
            return tls.version(), tls.getpeercert()
    finally:
        b.close()
        thread.join(10)
        a.close()


@pytest.mark.parametrize('key_type', ['ec', 'rsa'])
def test_python_ssl_serves_it_and_verifies_dns_and_ip_sans(tmp_path, key_type):
    failed, r = run(tmp_path, key_type=key_type)
    assert not failed
    crt, key = r['certificate'], r['private_key']
    version, peer = handshake(crt, key, 'server.scalelab.test')
    assert version in ('TLSv1.2', 'TLSv1.3')
    assert ('IP Address', '10.240.0.1') in peer['subjectAltName']
    handshake(crt, key, '10.240.0.1')
    with pytest.raises(ssl.SSLCertVerificationError, match='mismatch'):
        handshake(crt, key, 'other.scalelab.test')
    with pytest.raises(ssl.SSLCertVerificationError, match='mismatch'):
        handshake(crt, key, '10.240.0.2')


def test_the_fingerprint_is_the_sha256_of_the_der(tmp_path):
    _f, r = run(tmp_path)
    with open(r['certificate']) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    assert r['fingerprint_sha256'] == ':'.join('%02x' % b for b in digest.finalize())
