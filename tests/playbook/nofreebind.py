# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a command on a "host" whose kernel refuses IP_FREEBIND binds.

    python3 nofreebind.py COMMAND [ARG...]

Installs a seccomp filter (the mechanism container runtimes use to take
socket options away) that makes setsockopt(SOL_IP, IP_FREEBIND) and
setsockopt(SOL_IPV6, IPV6_FREEBIND) fail with EPERM, then execs COMMAND.
The filter is inherited by every process COMMAND starts (the Ansible
modules included), and nothing else changes: the tests use it to check that
AnyIP is refused before any change where such binds fail. x86_64 and
aarch64 only; standard library (ctypes) only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7fff0000
SECCOMP_RET_ERRNO = 0x00050000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
OFF_NR, OFF_ARCH, OFF_ARGS = 0, 4, 16
ARCHES = {'x86_64': (0xc000003e, 54), 'aarch64': (0xc00000b7, 208)}   # AUDIT_ARCH_*, __NR_setsockopt
SOL_IP, IP_FREEBIND, SOL_IPV6, IPV6_FREEBIND = 0, 15, 41, 78
# BPF opcodes
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [('code', ctypes.c_ushort), ('jt', ctypes.c_ubyte), ('jf', ctypes.c_ubyte),
                ('k', ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.POINTER(SockFilter))]


def program(arch, nr):
    """The filter: EPERM for the two FREEBIND options, everything else allowed."""
    level, optname = OFF_ARGS + 8 * 1, OFF_ARGS + 8 * 2      # low words (little-endian)
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    return [
        (LD_W_ABS, 0, 0, OFF_ARCH), (JEQ_K, 0, 10, arch),    # another ABI: allow
        (LD_W_ABS, 0, 0, OFF_NR), (JEQ_K, 0, 8, nr),         # not setsockopt: allow
        (LD_W_ABS, 0, 0, level), (JEQ_K, 0, 2, SOL_IP),       # level still loaded at the jump
        (LD_W_ABS, 0, 0, optname), (JEQ_K, 3, 4, IP_FREEBIND),
        (JEQ_K, 0, 3, SOL_IPV6),
        (LD_W_ABS, 0, 0, optname), (JEQ_K, 0, 1, IPV6_FREEBIND),
        (RET_K, 0, 0, deny),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]


def install():
    machine = platform.machine()
    if machine not in ARCHES:
        sys.exit('nofreebind: no seccomp filter for %s' % machine)
    insns = program(*ARCHES[machine])
    table = (SockFilter * len(insns))(*[SockFilter(*i) for i in insns])
    prog = SockFprog(len(insns), ctypes.cast(table, ctypes.POINTER(SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        sys.exit('nofreebind: seccomp: %s' % os.strerror(ctypes.get_errno()))


def main(argv):
    if not argv:
        sys.exit(__doc__)
    install()
    os.execvp(argv[0], argv)


if __name__ == '__main__':
    main(sys.argv[1:])
