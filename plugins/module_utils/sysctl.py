# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel parameters under /proc/sys, for scalelab.testbed.sysctls and restore.

Two halves:

* pure planning (no root, no kernel; unit-tested): key names, value tokens,
  token-wise comparison, the apply order, validation of every key against
  what a probe found, and the update of a persist file in place;
* the kernel side: probe a key (exists, readable, writable, read-only
  mount, value), read and write values (a module runs the writes through
  transaction.Transaction, which puts back what was written when a later
  write fails).

Keys are handled in their canonical dotted form (``net.ipv4.ip_local_port_range``);
as in sysctl(8), a dot inside one path component (a VLAN interface name) is
written as ``/`` in the dotted form, and a key may also be given in the
slashed form (``net/ipv4/conf/eth0.100/rp_filter``).

The conntrack hash table size (``/sys/module/nf_conntrack/parameters/hashsize``)
is planned as a pseudo key, ``conntrack_hashsize``, so that it takes its
place in the apply order (before ``nf_conntrack_max``) and in rollback.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError
from ansible_collections.scalelab.testbed.plugins.module_utils.ipplan import LIMITS

PROC_SYS = '/proc/sys'
HASHSIZE_PATH = '/sys/module/nf_conntrack/parameters/hashsize'
HASHSIZE_KEY = 'conntrack_hashsize'
PERSIST_DIR = '/etc/sysctl.d'

GLOBAL_KEY_REASON = 'global key: it would change the container host; set it on the host'

# The order in which keys are applied. These go first, in this order; every
# other key follows in alphabetical order of its dotted name (with the one
# data-dependent exception of ip_unprivileged_port_start, see order_keys).
# fs.nr_open bounds every nofile limit, so it leads; the conntrack hash is
# sized before the table's maximum grows.
FIRST_KEYS = (
    'fs.nr_open',
    'fs.file-max',
    HASHSIZE_KEY,
    'net.netfilter.nf_conntrack_buckets',
    'net.netfilter.nf_conntrack_max',
    'net.nf_conntrack_max',
)

PORT_RANGE_KEY = 'net.ipv4.ip_local_port_range'
UNPRIV_START_KEY = 'net.ipv4.ip_unprivileged_port_start'
# Keys whose validation needs the value of another key.
RELATED_KEYS = {
    PORT_RANGE_KEY: (UNPRIV_START_KEY,),
    UNPRIV_START_KEY: (PORT_RANGE_KEY,),
}

# Keys that hold one value for the whole host although every network
# namespace shows them (read-only outside the initial namespace).
GLOBAL_NET_KEYS = frozenset((
    'net.netfilter.nf_conntrack_max',
    'net.netfilter.nf_conntrack_buckets',
    'net.netfilter.nf_conntrack_expect_max',
    'net.nf_conntrack_max',
))

# Keys outside net.* that belong to a namespace a container has its own copy
# of (UTS, IPC), so setting them in a container does not touch the host.
NAMESPACED_NON_NET_KEYS = frozenset((
    'kernel.hostname', 'kernel.domainname',
    'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem',
    'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced',
))
NAMESPACED_NON_NET_PREFIXES = ('fs.mqueue.',)

# Registered in the initial network namespace only: when one of them is
# visible, this process runs in the host's network namespace.
INIT_NETNS_MARKERS = ('net/core/netdev_max_backlog', 'net/ipv4/tcp_mem')

# Keys whose value is text even when it happens to look like a number.
STRING_KEYS = frozenset((
    'kernel.hostname', 'kernel.domainname', 'kernel.core_pattern', 'kernel.modprobe',
    'kernel.poweroff_cmd', 'net.core.default_qdisc',
    'net.ipv4.tcp_congestion_control', 'net.ipv4.tcp_allowed_congestion_control',
))

# Bounds the kernel enforces with EINVAL (the one limits table, ipplan.LIMITS),
# checked before anything is written so that the message can say what is accepted.
KNOWN_RANGES = dict(LIMITS, **{HASHSIZE_KEY: (1, 2 ** 31 - 1)})

_COMPONENT_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.@+-]*\Z')
_DECIMAL_RE = re.compile(r'^-?(0|[1-9][0-9]*)\Z')
_KERNEL_INT_RE = re.compile(r'^-?[0-9]+\Z')
_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]')
MAX_KEY_LEN = 255


# ---------------------------------------------------------------- key names

def normalize_key(name, field='settings'):
    """Return (canonical dotted key, list of /proc/sys path components).

    Raises TestbedError for anything that is not a plain sysctl name: shell
    metacharacters, whitespace, empty components, '..', absolute paths.
    """
    if not isinstance(name, str) or not name:
        raise TestbedError(field, 'an empty key name is not allowed', 'give a key such as net.core.somaxconn')
    if len(name) > MAX_KEY_LEN:
        raise TestbedError(field, 'key %r is longer than %d characters' % (name[:40] + '...', MAX_KEY_LEN))
    if '/' in name and ('.' not in name or name.index('/') < name.index('.')):
        parts = name.split('/')
    else:
        parts = [p.replace('/', '.') for p in name.split('.')]
    for part in parts:
        if not part or part in ('.', '..') or not _COMPONENT_RE.match(part):
            raise TestbedError(
                field, 'key %r is not a valid sysctl name (it contains %s)'
                % (name, 'an empty component' if not part else
                   'characters that are not allowed: only letters, digits, "_", "-", "@", "+" are allowed'
                   ' between the "." (or "/") separators'),
                'write it like net.ipv4.ip_local_port_range or net/ipv4/ip_local_port_range')
    canonical = '.'.join(p.replace('.', '/') for p in parts)
    return canonical, parts


def key_parts(key):
    """Path components of a canonical dotted key (or the pseudo key)."""
    return normalize_key(key)[1]


def key_path(key, root=PROC_SYS):
    if key == HASHSIZE_KEY:
        return HASHSIZE_PATH
    return os.path.join(root, *key_parts(key))


def is_net_key(key):
    return key.startswith('net.')


# ------------------------------------------------------------------- values

def normalize_value(key, value, field='settings'):
    """A desired value (int, str or list) as a list of string tokens."""
    where = '%s.%s' % (field, key)
    if isinstance(value, bool):
        raise TestbedError(where, 'got the boolean %r; sysctl values are numbers or text' % value,
                           'write 1 or 0 (quote "yes"/"no" if you mean the text)')
    if isinstance(value, int):
        tokens = [str(value)]
    elif isinstance(value, float):
        raise TestbedError(where, 'got the number %r; the kernel takes integers only' % value,
                           'write an integer')
    elif isinstance(value, str):
        tokens = value.split()
    elif isinstance(value, (list, tuple)):
        tokens = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise TestbedError(where, 'list item %r is not an integer or a string' % (item,),
                                   'give a list of integers, e.g. [1024, 65535]')
            item = str(item)
            if not item or item.split() != [item]:
                raise TestbedError(where, 'list item %r must be one token without whitespace' % item,
                                   'give each value as its own list item')
            tokens.append(item)
    else:
        raise TestbedError(where, 'got a value of type %s' % type(value).__name__,
                           'give an integer, a string or a list of them')
    if not tokens:
        raise TestbedError(where, 'the value is empty', 'give the value to write')
    for token in tokens:
        if _CONTROL_RE.search(token):
            raise TestbedError(where, 'the value contains control characters', 'remove them')
    return tokens


def tokens_of(text):
    """Tokens of a value as the kernel shows it (tab- or space-separated)."""
    return text.split()


def format_tokens(tokens):
    return ' '.join(tokens) if tokens is not None else None


def _as_int(token):
    if _KERNEL_INT_RE.match(token):
        return int(token)
    return None


def values_equal(a, b):
    """Compare two token lists token by token ('1024 65535' == '1024\\t65535')."""
    if a is None or b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        ix, iy = _as_int(x), _as_int(y)
        if ix is not None and iy is not None:
            if ix != iy:
                return False
        elif x != y:
            return False
    return True


def is_numeric(key, tokens):
    return key not in STRING_KEYS and bool(tokens) and all(_as_int(t) is not None for t in tokens)


def hash_granule(page_size):
    """The kernel sizes hash tables in whole pages of bucket pointers."""
    return max(1, page_size // 8)


def effective_tokens(key, tokens, page_size=4096):
    """What the kernel will store for tokens (conntrack hash sizes round up)."""
    if key in (HASHSIZE_KEY, 'net.netfilter.nf_conntrack_buckets') and len(tokens) == 1 \
            and _as_int(tokens[0]) is not None and int(tokens[0]) > 0:
        granule = hash_granule(page_size)
        value = int(tokens[0])
        return [str(-(-value // granule) * granule)]
    return list(tokens)


def validate_value(key, desired, current):
    """Check desired tokens against the kernel's current tokens.

    Numeric keys must get the same number of tokens, each a plain decimal
    integer (the kernel reads '010' as octal 8, so leading zeros are refused).
    Returns None or an error message.
    """
    if current is None or not is_numeric(key, current):
        return None
    if len(desired) != len(current):
        return ('%s takes %d value%s (the kernel shows %r), got %d: %r'
                % (key, len(current), '' if len(current) == 1 else 's', ' '.join(current),
                   len(desired), ' '.join(desired)))
    for token in desired:
        if not _DECIMAL_RE.match(token):
            if _KERNEL_INT_RE.match(token) or token.lower().startswith(('0x', '-0x')):
                return ('%s: %r must be a plain decimal integer (the kernel reads a leading 0 as '
                        'octal and 0x as hexadecimal); write %s' % (key, token, _plain_hint(token)))
            return '%s: %r is not an integer; the kernel has integers here (%r)' % (
                key, token, ' '.join(current))
    bounds = KNOWN_RANGES.get(key)
    if bounds:
        for token in desired:
            if not bounds[0] <= int(token) <= bounds[1]:
                return '%s: %s is out of range, the kernel accepts %d to %d' % (
                    key, token, bounds[0], bounds[1])
    return None


def _plain_hint(token):
    try:
        return str(int(token, 0))
    except ValueError:
        return 'the number in decimal without a leading zero'


def check_related(desired, current):
    """Constraints between keys, on the values they will have. Returns errors."""
    def value(key):
        if key in desired:
            return desired[key]
        return current.get(key)

    errors = []
    port_range = value(PORT_RANGE_KEY)
    start = value(UNPRIV_START_KEY)
    if PORT_RANGE_KEY in desired and port_range and len(port_range) == 2 \
            and all(_DECIMAL_RE.match(t) for t in port_range):
        low, high = int(port_range[0]), int(port_range[1])
        if low > high:
            errors.append('%s: the low end %d is above the high end %d' % (PORT_RANGE_KEY, low, high))
        if start and _DECIMAL_RE.match(start[0]) and low < int(start[0]):
            errors.append('%s: the low end %d is below %s (%s); the kernel refuses that '
                          '(lower %s too, or start the range at %s or above)'
                          % (PORT_RANGE_KEY, low, UNPRIV_START_KEY, start[0], UNPRIV_START_KEY, start[0]))
    if UNPRIV_START_KEY in desired and start and _DECIMAL_RE.match(start[0]) and port_range \
            and len(port_range) == 2 and _DECIMAL_RE.match(port_range[0]) \
            and int(start[0]) > int(port_range[0]) and PORT_RANGE_KEY not in desired:
        errors.append('%s: %s is above the low end of %s (%s); the kernel refuses that '
                      '(raise the range too)' % (UNPRIV_START_KEY, start[0], PORT_RANGE_KEY, port_range[0]))
    ping = desired.get('net.ipv4.ping_group_range')
    if ping and len(ping) == 2 and all(_DECIMAL_RE.match(t) for t in ping) and int(ping[0]) > int(ping[1]):
        errors.append('net.ipv4.ping_group_range: the low end %s is above the high end %s' % tuple(ping))
    return errors


# -------------------------------------------------------------------- order

def order_keys(keys, desired=None, current=None, restore=False):
    """The deterministic order in which keys are written.

    FIRST_KEYS in their listed order, then every other key alphabetically.
    One exception depends on the values: when the new ip_local_port_range
    starts below the current ip_unprivileged_port_start, the start is moved
    first (the kernel checks each write against the other key's value).
    restore=True undoes: the ordinary keys first, then FIRST_KEYS in reverse.
    """
    keys = list(keys)
    first = [k for k in FIRST_KEYS if k in keys]
    rest = sorted(k for k in keys if k not in FIRST_KEYS)
    if PORT_RANGE_KEY in rest and UNPRIV_START_KEY in rest and desired and current:
        new_range = desired.get(PORT_RANGE_KEY) or []
        cur_start = current.get(UNPRIV_START_KEY) or []
        try:
            move = int(new_range[0]) < int(cur_start[0])
        except (IndexError, ValueError):
            move = False
        if move:
            rest.remove(UNPRIV_START_KEY)
            rest.insert(rest.index(PORT_RANGE_KEY), UNPRIV_START_KEY)
    if restore:
        return rest + list(reversed(first))
    return first + rest


# ---------------------------------------------------------------- planning

def is_global_in_container(key, init_netns):
    """True when writing key inside a container would change the host."""
    if key == HASHSIZE_KEY:
        return True
    if not is_net_key(key):
        return not (key in NAMESPACED_NON_NET_KEYS or key.startswith(NAMESPACED_NON_NET_PREFIXES))
    return bool(init_netns) or key in GLOBAL_NET_KEYS


def classify(key, state, netns=None, in_container=False, init_netns=True, host_exists=None):
    """Whether key can be written where it runs.

    Returns None (it can), ('unavailable', reason) or ('error', message).
    state is a probe result (see probe_key). host_exists tells, for a key
    missing inside netns, whether the host's namespace has it.
    """
    if key == HASHSIZE_KEY:
        if netns:
            return ('error', 'conntrack_hashsize sizes the host-wide conntrack hash table; it cannot be '
                             'set inside netns %r: set it in a task without netns' % netns)
        if in_container:
            return ('unavailable', GLOBAL_KEY_REASON)
        if not state.get('exists'):
            return ('error', 'conntrack_hashsize: the nf_conntrack module is not loaded (%s does not '
                             'exist); load it first (modprobe nf_conntrack) or leave conntrack_hashsize out'
                             % HASHSIZE_PATH)
        return _classify_access(key, state, netns, init_netns)
    if netns and not is_net_key(key):
        return ('error', '%s is not a network key: only net.* keys exist per network namespace, so it '
                         'cannot be set inside netns %r; set it in a task without netns' % (key, netns))
    if in_container and is_global_in_container(key, init_netns):
        return ('unavailable', GLOBAL_KEY_REASON)
    if not state.get('exists'):
        if state.get('is_dir'):
            return ('error', '%s is a directory of keys, not a key' % key)
        if netns and host_exists:
            return ('unavailable', 'not per network namespace: %s exists only in the host\'s initial '
                                   'network namespace, so it cannot be set inside netns %r; set it in a '
                                   'task without netns' % (key, netns))
        if in_container and is_net_key(key):
            return ('unavailable', 'not visible in this container\'s network namespace: either a global '
                                   'key (set it on the host) or a misspelt name')
        if key.startswith('net.netfilter.') or key == 'net.nf_conntrack_max':
            return ('error', 'no such key: %s (the net.netfilter keys exist only while the nf_conntrack '
                             'module is loaded)' % key)
        return ('error', 'no such key: %s (/proc/sys/%s does not exist; check the spelling, and write a '
                         'dot inside a name as "/", e.g. net.ipv4.conf.eth0/100.rp_filter)'
                % (key, '/'.join(key_parts(key))))
    if not state.get('readable'):
        return ('error', '%s is write-only (an action such as vm.drop_caches, not a setting); this '
                         'module does not run actions' % key)
    return _classify_access(key, state, netns, init_netns)


def _classify_access(key, state, netns, init_netns):
    if key in GLOBAL_NET_KEYS and (netns or not init_netns) and not state.get('writable'):
        return ('unavailable', 'global key, read-only inside a network namespace: set it on the host '
                               '(in a task without netns)')
    if state.get('ro_mount'):
        return ('unavailable', 'read-only: %s is on a read-only mount (a container usually mounts '
                               '/proc/sys and /sys read-only); set it on the host' % state.get('path', key))
    if not state.get('writable'):
        return ('unavailable', 'read-only key (mode %s): the kernel does not let anyone change it here'
                % oct(state.get('mode') or 0o444).replace('0o', '0'))
    return None


def plan(desired, states, netns=None, in_container=False, init_netns=True, host_exists=None,
         related=None, page_size=4096):
    """desired + probed states -> what to change.

    desired: {key: tokens} (normalized); states: {key: probe result};
    related: {key: tokens} current values of RELATED_KEYS not in desired;
    host_exists: {key: bool} for keys missing inside netns.
    Returns a dict: changes [(key, old_tokens, new_tokens)] in apply order,
    unchanged [keys], unavailable {key: reason}, errors [messages],
    previous {key: tokens}, expected {key: tokens} (values after applying).
    """
    host_exists = host_exists or {}
    errors, unavailable, previous, expected = [], {}, {}, {}
    for key in sorted(desired):
        state = states.get(key, {})
        verdict = classify(key, state, netns, in_container, init_netns, host_exists.get(key))
        current = state.get('value') if state.get('readable') else None
        if current is not None:
            previous[key] = list(current)
        if verdict and verdict[0] == 'error':
            errors.append(verdict[1])
            continue
        message = validate_value(key, desired[key], current)
        if message:
            errors.append(message)
            continue
        if verdict:
            unavailable[key] = verdict[1]
            continue
        expected[key] = effective_tokens(key, desired[key], page_size)
    current_all = dict(related or {})
    current_all.update(previous)
    errors.extend(check_related({k: v for k, v in desired.items() if k in expected}, current_all))
    changes, unchanged = [], []
    for key in order_keys(expected, desired, current_all):
        if values_equal(previous.get(key), expected[key]):
            unchanged.append(key)
        else:
            changes.append((key, previous.get(key), expected[key]))
    return {'changes': changes, 'unchanged': unchanged, 'unavailable': unavailable,
            'errors': errors, 'previous': previous, 'expected': expected}


# ------------------------------------------------------------ persist files

_PERSIST_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.@+-]*\.conf\Z')


def validate_persist_path(path, field='persist'):
    if not isinstance(path, str) or not path:
        raise TestbedError(field, 'an empty path is not allowed')
    norm = os.path.normpath(path)
    if not os.path.isabs(path) or os.path.dirname(norm) != PERSIST_DIR or norm != path.rstrip('/') \
            or not _PERSIST_NAME_RE.match(os.path.basename(norm)):
        raise TestbedError(field, '%r is not a file directly under %s/ whose name ends in .conf'
                           % (path, PERSIST_DIR),
                           'use a path like %s/90-scalelab-testbed.conf' % PERSIST_DIR)
    return norm


def parse_conf_line(line):
    """Parse one sysctl.d line: (canonical key, value tokens) or None."""
    text = line.strip()
    if not text or text[0] in '#;':
        return None
    if text.startswith('-'):
        text = text[1:].lstrip()
    if '=' not in text:
        return None
    name, value = text.split('=', 1)
    try:
        key = normalize_key(name.strip())[0]
    except TestbedError:
        return None  # globs and names this module does not manage
    return key, value.split()


PERSIST_HEADER = ('# Kernel parameters written by scalelab.testbed.sysctls.\n'
                  '# Keys already in this file are updated in place; other lines are kept.\n')


def plan_persist(content, desired):
    """Update the keys of desired in a sysctl.d file; keep every other line.

    content: the file's text, or None when it does not exist.
    desired: {key: tokens}. Every line setting one of the keys gets the new
    value (sysctl applies the last one, so earlier duplicates are updated
    too); lines already right are left byte for byte; keys not in the file
    are appended. Returns the new text.
    """
    lines = [] if content is None else content.splitlines(True)
    seen = set()
    out = []
    for line in lines:
        parsed = parse_conf_line(line)
        if parsed and parsed[0] in desired:
            key, tokens = parsed
            seen.add(key)
            if not values_equal(tokens, desired[key]):
                indent = line[:len(line) - len(line.lstrip())]
                body = line.strip()
                dash = '-' if body.startswith('-') else ''
                name = body.lstrip('-').split('=', 1)[0].strip()
                line = '%s%s%s = %s\n' % (indent, dash, name, ' '.join(desired[key]))
        out.append(line)
    missing = [k for k in order_keys(desired) if k not in seen]
    if missing:
        if content is None:
            out.append(PERSIST_HEADER)
        elif out and not out[-1].endswith('\n'):
            out[-1] += '\n'
        for key in missing:
            out.append('%s = %s\n' % (key, ' '.join(desired[key])))
    return ''.join(out)


SYSCTL_DIRS = ('/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d',
               '/lib/sysctl.d')


def persist_overrides(our_path, desired, others):
    """Lines in files read after ours that set our keys to other values.

    others: {path: content} of the other sysctl.d files (and /etc/sysctl.conf,
    which procps reads last). Files are read in the order of their base
    names, /etc/sysctl.conf last. Returns [(key, path, tokens)].
    """
    ours = os.path.basename(our_path)
    found = []
    for path in sorted(others, key=lambda p: (p == '/etc/sysctl.conf', os.path.basename(p))):
        if path != '/etc/sysctl.conf' and os.path.basename(path) <= ours:
            continue
        for line in (others[path] or '').splitlines():
            parsed = parse_conf_line(line)
            if parsed and parsed[0] in desired and not values_equal(parsed[1], desired[parsed[0]]):
                found.append((parsed[0], path, parsed[1]))
    return found


def render_values(values, keys=None):
    """'key = value' lines for a diff."""
    keys = sorted(values) if keys is None else keys
    return ''.join('%s = %s\n' % (k, ' '.join(values[k])) for k in keys if values.get(k) is not None)


# ------------------------------------------------------------ kernel side

def probe_key(key, root=PROC_SYS):
    """What the kernel shows for key here (in this process's namespaces)."""
    path = key_path(key, root)
    state = {'path': path, 'exists': False, 'readable': False, 'writable': False,
             'ro_mount': False, 'mode': None, 'value': None}
    try:
        st = os.stat(path)
    except OSError:
        return state
    if stat.S_ISDIR(st.st_mode):
        state['is_dir'] = True
        return state
    state['exists'] = True
    state['mode'] = stat.S_IMODE(st.st_mode)
    if os.geteuid() == 0:
        state['writable'] = bool(st.st_mode & stat.S_IWUSR)
    else:
        state['writable'] = os.access(path, os.W_OK)
    try:
        state['ro_mount'] = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        pass
    try:
        with open(path) as f:
            state['value'] = tokens_of(f.read())
        state['readable'] = True
    except OSError as exc:
        state['read_errno'] = exc.errno
    return state


def probe(keys, root=PROC_SYS):
    return dict((k, probe_key(k, root)) for k in keys)


def in_init_netns(root=PROC_SYS):
    return any(os.path.exists(os.path.join(root, m)) for m in INIT_NETNS_MARKERS)


def read_tokens(key, root=PROC_SYS):
    with open(key_path(key, root)) as f:
        return tokens_of(f.read())


def write_tokens(key, tokens, root=PROC_SYS):
    """One write(2) of the value, as sysctl(8) does."""
    fd = os.open(key_path(key, root), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, ' '.join(tokens).encode())
    finally:
        os.close(fd)


def errno_text(exc):
    name = errno.errorcode.get(exc.errno, 'errno %s' % exc.errno)
    return '%s (%s)' % (name, os.strerror(exc.errno)) if exc.errno else str(exc)
