# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS for both halves, standard library only (ssl).

The halves keep bare descriptors (no socket objects) in their epoll loops, so
TLS runs over memory BIOs: what arrives on a descriptor is fed to the
connection's SSLObject, and what OpenSSL wants to send is written to the
descriptor. One Conn per TLS connection; nothing of this runs without TLS.

The client resumes sessions: the first session of each destination that
carries a ticket (TLS 1.3) or an id (TLS 1.2) is offered by the handshakes
that follow, so most of them skip the key exchange and the certificate.
"""

from __future__ import annotations

import os
import ssl

from .system import Usage

WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


def client_context(ca_file=None, server_name=None):
    """The client's context: verification only with a CA file (the hostname too
    when a server name is given), no verification otherwise (a testbed's own
    self-signed certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise Usage('--tls-ca %s: cannot load it as PEM certificates (%s)' % (ca_file, exc))
        ctx.check_hostname = bool(server_name)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_context(cert_file, key_file):
    """The server's context, one session ticket per handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise Usage('--tls-cert %s / --tls-key %s: cannot load them (%s)'
                    % (cert_file, key_file, exc))
    if hasattr(ctx, 'num_tickets'):
        ctx.num_tickets = 1
    return ctx


class Conn(object):
    """One TLS connection over descriptor fd. done: the handshake completed;
    started: when it began (monotonic s); dst: the client's destination."""

    __slots__ = ('obj', 'inb', 'outb', 'fd', 'done', 'started', 'dst')

    def __init__(self, ctx, fd, server_side, started=0.0, dst=None, server_name=None,
                 session=None):
        self.inb = ssl.MemoryBIO()
        self.outb = ssl.MemoryBIO()
        if server_side:
            self.obj = ctx.wrap_bio(self.inb, self.outb, server_side=True)
        else:
            self.obj = ctx.wrap_bio(self.inb, self.outb, server_hostname=server_name or None,
                                    session=session)
        self.fd = fd
        self.done = False
        self.started = started
        self.dst = dst

    def flush(self):
        """Write what OpenSSL has to send (a full socket buffer drops it: the peer's
        timeout sees it)."""
        out = self.outb.read()
        if out:
            try:
                os.write(self.fd, out)
            except OSError:
                pass

    def handshake(self):
        """Advance the handshake. True when it completed now; False while it waits
        for the peer. Raises ssl.SSLError when it failed (the alert is sent)."""
        try:
            self.obj.do_handshake()
        except WANT:
            self.flush()
            return False
        except ssl.SSLError:
            self.flush()
            raise
        self.done = True
        self.flush()
        return True

    def feed(self, data):
        """Bytes that arrived on fd. Returns (handshake completed by them, plaintext).
        Raises ssl.SSLError when the handshake failed."""
        self.inb.write(data)
        completed = False
        if not self.done:
            completed = self.handshake()
            if not completed:
                return False, b''
        out = []
        while True:
            try:
                chunk = self.obj.read(65536)
            except WANT:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break               # close_notify: the FIN that follows ends it
            if not chunk:
                break
            out.append(chunk)
        self.flush()                # session tickets, key updates
        return completed, b''.join(out)

    def send(self, data):
        """Write plaintext to the peer."""
        try:
            self.obj.write(data)
        except ssl.SSLError:
            return
        self.flush()

    def session(self):
        """The session to resume, once it can be: a TLS 1.3 session with its ticket,
        a TLS 1.2 one; else None."""
        s = self.obj.session
        if s is None:
            return None
        if s.has_ticket or self.obj.version() == 'TLSv1.2':
            return s
        return None
