# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nofile/nproc limits: pam_limits files, systemd drop-ins, what takes effect.

Pure planning (unit-tested without root): validation of the desired limits
(including the fs.nr_open bound), the in-place update of a limits.d file, the
rendering of systemd drop-ins, and the computation of what a new login
session (pam_limits order) or a new service (systemd) would get. The only
kernel-facing helpers read this process's limits and capabilities.
"""

from __future__ import annotations

import os
import re

from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError

LIMITS_CONF = '/etc/security/limits.conf'
LIMITS_DIR = '/etc/security/limits.d'
DROPIN_NAME = '90-scalelab-testbed.conf'
DEFAULT_LIMITS_FILE = LIMITS_DIR + '/' + DROPIN_NAME
SYSTEM_CONF = '/etc/systemd/system.conf'
SYSTEM_DROPIN_DIR = '/etc/systemd/system.conf.d'
SYSTEM_CONF_DIRS = (SYSTEM_DROPIN_DIR, '/run/systemd/system.conf.d',
                    '/usr/local/lib/systemd/system.conf.d', '/usr/lib/systemd/system.conf.d')
UNIT_DIR = '/etc/systemd/system'
UNIT_DIRS = (UNIT_DIR, '/run/systemd/system', '/usr/local/lib/systemd/system',
             '/usr/lib/systemd/system', '/lib/systemd/system')
NR_OPEN_PATH = '/proc/sys/fs/nr_open'

ITEMS = ('nofile', 'nproc')
UNLIMITED = 'unlimited'
_UNLIMITED_WORDS = ('unlimited', 'infinity', '-1', '-')
CAP_SYS_RESOURCE = 24

# pam_limits priorities (LIMITS_DEF_* in pam_limits.c): lower wins; a later
# entry replaces an earlier one of the same or a weaker priority.
PRIO_USER, PRIO_GROUP, PRIO_DEFAULT, PRIO_NONE = 0, 1, 4, 6

_DOMAIN_NAME_RE = re.compile(r'^@?[A-Za-z_][A-Za-z0-9_.-]*\$?\Z')
_DOMAIN_RANGE_RE = re.compile(r'^@?([0-9]+:[0-9]*|:[0-9]+)\Z')
_UNIT_RE = re.compile(r'^[A-Za-z0-9:_.-]+(@[A-Za-z0-9:_.-]*)?\.(service|socket|mount|swap)\Z')
_UNIT_BASE_RE = re.compile(r'^[A-Za-z0-9:_.-]+(@[A-Za-z0-9:_.-]*)?\Z')
_LIMITS_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.@+-]*\.conf\Z')
UNIT_SECTIONS = {'service': 'Service', 'socket': 'Socket', 'mount': 'Mount', 'swap': 'Swap'}


# ---------------------------------------------------------------- validation

def validate_domain(domain, field='domain'):
    if not isinstance(domain, str) or not domain:
        raise TestbedError(field, 'an empty domain is not allowed', "use '*', a user, @group or a uid range")
    if len(domain) > 64:
        raise TestbedError(field, 'domain %r is longer than 64 characters' % domain[:20])
    if domain.startswith('%'):
        raise TestbedError(field, '%r: "%%" domains apply to maxlogins only, not to nofile/nproc' % domain,
                           "use '*', a user name or @group")
    if domain == '*' or _DOMAIN_NAME_RE.match(domain) or _DOMAIN_RANGE_RE.match(domain):
        return domain
    raise TestbedError(field, 'domain %r is not a pam_limits domain (or contains characters that are '
                              'not allowed, such as whitespace or shell metacharacters)' % domain,
                       "use '*', a user name, @group, a uid range like 1000:2000 or a gid range like @100:200")


def validate_value(item, kind, value):
    """One limit value: an int >= 1, or 'unlimited' (nproc only)."""
    field = '%s_%s' % (item, kind)
    if value is None:
        return None
    if isinstance(value, bool):
        raise TestbedError(field, 'got the boolean %r' % value, 'give a number')
    text = str(value).strip().lower()
    if text in _UNLIMITED_WORDS:
        if item == 'nofile':
            raise TestbedError(field, "'%s' is not allowed for nofile: the kernel caps open files at "
                                      'fs.nr_open, and an unlimited nofile makes setrlimit fail (logins '
                                      'and sudo break)' % value,
                               'give a number no larger than fs.nr_open (raise fs.nr_open first with '
                               'scalelab.testbed.sysctls if you need more)')
        return UNLIMITED
    if not re.match(r'^[0-9]+\Z', text):
        raise TestbedError(field, '%r is not a whole number%s' % (
            value, '' if item == 'nofile' else " or 'unlimited'"), 'give a number such as 1048576')
    number = int(text)
    if number < 1:
        raise TestbedError(field, '%d is too small: a process needs at least one' % number,
                           'give a number of at least 1')
    if number > 2 ** 63 - 1:
        raise TestbedError(field, '%d is too large' % number)
    return number


def _le(a, b):
    """a <= b where 'unlimited' is larger than every number."""
    if b == UNLIMITED:
        return True
    if a == UNLIMITED:
        return False
    return a <= b


def validate_limits(desired, nr_open, nr_open_source='fs.nr_open'):
    """desired: {item: {'soft': v, 'hard': v}} (validated values). Raises TestbedError."""
    for item, pair in sorted(desired.items()):
        soft, hard = pair.get('soft'), pair.get('hard')
        if soft is not None and hard is not None and not _le(soft, hard):
            raise TestbedError('%s_soft' % item, 'the soft limit %s is above the hard limit %s'
                               % (soft, hard), 'make %s_soft at most %s_hard' % (item, item))
    nofile = desired.get('nofile', {})
    for kind in ('hard', 'soft'):
        value = nofile.get(kind)
        if value is not None and nr_open is not None and value > nr_open:
            raise TestbedError(
                'nofile_%s' % kind,
                '%d is above %s (%d): setrlimit would fail for every new session, which breaks '
                'logins and sudo' % (value, nr_open_source, nr_open),
                'raise fs.nr_open first (scalelab.testbed.sysctls with fs.nr_open: %d or more) and '
                'pass the same value as nr_open, or lower nofile_%s' % (value, kind))


def validate_limits_path(path, field='path'):
    norm = os.path.normpath(path or '')
    if not path or not os.path.isabs(path) or os.path.dirname(norm) != LIMITS_DIR \
            or not _LIMITS_NAME_RE.match(os.path.basename(norm)):
        raise TestbedError(field, '%r is not a file directly under %s/ whose name ends in .conf '
                                  '(pam_limits reads only *.conf there)' % (path, LIMITS_DIR),
                           'use a path like %s' % DEFAULT_LIMITS_FILE)
    return norm


def validate_unit(name, field='units'):
    """A unit name LimitNOFILE= applies to; '.service' is added when no type is given."""
    if not isinstance(name, str) or not name:
        raise TestbedError(field, 'an empty unit name is not allowed')
    if len(name) > 255:
        raise TestbedError(field, 'unit name %r is too long' % name[:40])
    if _UNIT_RE.match(name):
        return name
    if _UNIT_BASE_RE.match(name) and '.' not in name:
        return name + '.service'
    raise TestbedError(field, 'unit %r is not a service, socket, mount or swap unit name (or contains '
                              'characters that are not allowed, such as whitespace, "/" or shell '
                              'metacharacters)' % name,
                       'give a name like nginx.service')


def unit_section(unit):
    return UNIT_SECTIONS[unit.rsplit('.', 1)[1]]


# --------------------------------------------------------- limits.d files

def parse_value(item, text, nr_open=None):
    """A pam_limits value as pam reads it: int, 'unlimited' (or nr_open for nofile), or None."""
    text = text.strip().lower()
    if text in _UNLIMITED_WORDS:
        if item == 'nofile' and nr_open is not None:
            return nr_open  # pam_limits >= 1.5 maps an unlimited nofile to fs.nr_open
        return UNLIMITED
    match = re.match(r'^[0-9]+', text)
    if not match:
        return None
    return int(match.group(0))


def parse_limits_line(line):
    """(domain, type, item, value) of one limits.conf line, or None."""
    text = line.split('#', 1)[0].strip()
    if not text:
        return None
    parts = text.split(None, 3)
    if len(parts) != 4:
        return None
    return parts[0], parts[1].lower(), parts[2].lower(), parts[3].strip()


def _format_line(domain, kind, item, value):
    return '%-15s %-5s %-7s %s\n' % (domain, kind, item, value)


LIMITS_HEADER = ('# nofile/nproc limits written by scalelab.testbed.fd_limits.\n'
                 '# Other lines are kept; scalelab.testbed.restore puts the previous file back.\n')


def _group_values(entries, item):
    soft = hard = None
    for _domain, kind, _item, value in entries:
        parsed = parse_value(item, value)
        if kind in ('soft', '-'):
            soft = parsed
        if kind in ('hard', '-'):
            hard = parsed
    return soft, hard


def plan_limits_file(content, domain, desired, state='present'):
    """Update a limits.d file for domain; keep every other line.

    desired: {item: {'soft': v, 'hard': v}}. present: the lines of domain for
    each item in desired become one soft and one hard line (left untouched
    when they already say that), items missing are appended. absent: the
    lines of domain for the items in desired (all of ITEMS when desired is
    empty) are removed. Returns the new text, or None when the file should
    be deleted (nothing left in it but our header and blank lines).
    """
    if content is None and state == 'absent':
        return None
    lines = [] if content is None else content.splitlines(True)
    items = [i for i in ITEMS if i in desired] if desired else list(ITEMS)
    groups = dict((i, []) for i in items)
    for index, line in enumerate(lines):
        entry = parse_limits_line(line)
        if entry and entry[0] == domain and entry[2] in groups and entry[1] in ('soft', 'hard', '-'):
            groups[entry[2]].append((index, entry))
    drop, replace = set(), {}
    for item in items:
        found = groups[item]
        if state == 'absent':
            drop.update(i for i, _e in found)
            continue
        want = desired[item]
        canonical = ''.join(_format_line(domain, kind, item, want[kind])
                            for kind in ('soft', 'hard') if want.get(kind) is not None)
        if found:
            soft, hard = _group_values([e for _i, e in found], item)
            same = all(want.get(k) is None or want[k] == v for k, v in (('soft', soft), ('hard', hard)))
            if not same:
                replace[found[0][0]] = canonical
                drop.update(i for i, _e in found[1:])
        else:
            replace[None] = replace.get(None, '') + canonical
    out = []
    for index, line in enumerate(lines):
        if index in replace:
            out.append(replace[index])
        elif index not in drop:
            out.append(line)
    if None in replace:
        if content is None:
            out = [LIMITS_HEADER]
        elif out and not out[-1].endswith('\n'):
            out[-1] += '\n'
        out.append(replace[None])
    text = ''.join(out)
    if state == 'absent':
        rest = text.replace(LIMITS_HEADER, '', 1) if text.startswith(LIMITS_HEADER) else text
        if content is not None and text.startswith(LIMITS_HEADER) and not rest.strip():
            return None
    return text


# --------------------------------------------------------- systemd drop-ins

def systemd_value(soft, hard):
    def one(v):
        return 'infinity' if v == UNLIMITED else str(v)
    if soft is None:
        return one(hard)
    if hard is None or soft == hard:
        return one(soft)
    return '%s:%s' % (one(soft), one(hard))


DROPIN_HEADER = ('# Written by scalelab.testbed.fd_limits; scalelab.testbed.restore removes it.\n'
                 '# Services do not read limits.conf: they take these limits instead.\n')


def render_system_dropin(desired):
    """/etc/systemd/system.conf.d drop-in: DefaultLimitNOFILE/NPROC for every service."""
    text = DROPIN_HEADER + '[Manager]\n'
    for item in ITEMS:
        if item in desired:
            value = systemd_value(desired[item].get('soft'), desired[item].get('hard'))
            text += 'DefaultLimit%s=%s\n' % (item.upper(), value)
    return text


def render_unit_dropin(unit, desired):
    text = DROPIN_HEADER + '[%s]\n' % unit_section(unit)
    for item in ITEMS:
        if item in desired:
            value = systemd_value(desired[item].get('soft'), desired[item].get('hard'))
            text += 'Limit%s=%s\n' % (item.upper(), value)
    return text


def system_dropin_path(name=DROPIN_NAME):
    """The system manager drop-in; it takes the name of the limits file."""
    return '%s/%s' % (SYSTEM_DROPIN_DIR, name)


def unit_dropin_path(unit, name=DROPIN_NAME):
    return '%s/%s.d/%s' % (UNIT_DIR, unit, name)


def parse_systemd_limits(content, prefix):
    """{item: (soft, hard)} from the prefix+NOFILE/NPROC lines of a systemd file."""
    found = {}
    for line in (content or '').splitlines():
        text = line.strip()
        if not text or text[0] in '#;' or '=' not in text:
            continue
        name, value = [p.strip() for p in text.split('=', 1)]
        for item in ITEMS:
            if name == prefix + item.upper():
                if not value:
                    found[item] = None  # an empty assignment resets to the default
                    continue
                soft, _sep, hard = value.partition(':')
                soft = UNLIMITED if soft == 'infinity' else _int_or_none(soft)
                hard = soft if not _sep else (UNLIMITED if hard == 'infinity' else _int_or_none(hard))
                found[item] = (soft, hard)
    return found


def _int_or_none(text):
    return int(text) if re.match(r'^[0-9]+\Z', text.strip()) else None


def conf_dropin_order(listing):
    """systemd drop-in order: by file name across directories, the earlier directory masking.

    listing: [(directory, [file names])] in priority order. Returns paths.
    """
    chosen = {}
    for directory, names in listing:
        for name in names:
            if name.endswith('.conf') and name not in chosen:
                chosen[name] = os.path.join(directory, name)
    return [chosen[n] for n in sorted(chosen)]


def effective_service_limits(files, prefix='DefaultLimit'):
    """files: [(path, content)] in systemd order. {item: {soft, hard, from}}."""
    result = dict((item, {'soft': None, 'hard': None, 'from': None}) for item in ITEMS)
    for path, content in files:
        for item, pair in parse_systemd_limits(content, prefix).items():
            if pair is None:
                result[item] = {'soft': None, 'hard': None, 'from': None}
            else:
                result[item] = {'soft': pair[0], 'hard': pair[1], 'from': path}
    return result


# ------------------------------------------------------------ login limits

def _domain_match(domain, subject):
    """pam_limits priority of domain for subject, or None when it does not apply."""
    name, uid, gid, groups = (subject.get('user'), subject.get('uid'), subject.get('gid'),
                              subject.get('groups') or ())
    if name is not None and domain == name:
        return PRIO_USER
    is_group = domain.startswith('@')
    body = domain[1:] if is_group else domain
    if ':' in body:
        low, _sep, high = body.partition(':')
        number = gid if is_group else uid
        if number is None:
            return None
        try:
            if not low:
                ok = number == int(high)
            else:
                ok = number >= int(low) and (not high or number <= int(high))
        except ValueError:
            return None
        return (PRIO_GROUP if is_group else PRIO_USER) if ok else None
    if is_group:
        return PRIO_GROUP if body in groups else None
    if domain == '*':
        return PRIO_DEFAULT
    return None


def effective_login_limits(files, subject, nr_open=None):
    """What pam_limits would set for subject, from files in pam_limits order.

    files: [(path, content)]: limits.conf first, then limits.d/*.conf sorted
    by name. subject: {user, uid, gid, groups}. For each item, soft and hard
    with the file:line they come from; None when no line applies (the limit
    of the process opening the session is kept).
    """
    state = dict((item, {'soft': None, 'hard': None, 'soft_from': None, 'hard_from': None,
                         'src_soft': PRIO_NONE, 'src_hard': PRIO_NONE}) for item in ITEMS)
    for path, content in files:
        for lineno, line in enumerate((content or '').splitlines(), 1):
            entry = parse_limits_line(line)
            if not entry or entry[2] not in state:
                continue
            domain, kind, item, value = entry
            prio = _domain_match(domain, subject)
            if prio is None or kind not in ('soft', 'hard', '-'):
                continue
            parsed = parse_value(item, value, nr_open)
            if parsed is None:
                continue
            where = '%s:%d' % (path, lineno)
            cur = state[item]
            if kind in ('soft', '-'):
                if cur['src_soft'] < prio:
                    continue
                cur.update(soft=parsed, soft_from=where, src_soft=prio)
            if kind in ('hard', '-'):
                if cur['src_hard'] < prio:
                    continue
                cur.update(hard=parsed, hard_from=where, src_hard=prio)
    result = {}
    for item, cur in state.items():
        soft, hard = cur['soft'], cur['hard']
        if soft is not None and hard is not None and not _le(soft, hard):
            soft = hard  # pam_limits lowers a soft limit above the hard one
        result[item] = {'soft': soft, 'hard': hard, 'soft_from': cur['soft_from'],
                        'hard_from': cur['hard_from']}
    return result


def describe_subject(domain):
    if domain == '*':
        return 'a user with no entries of its own or of its groups'
    if domain.startswith('@'):
        return 'a member of group %s' % domain[1:]
    if ':' in domain:
        return 'uid %s' % domain
    return 'user %s' % domain


# ----------------------------------------------------------- own limits

def cap_effective(status_text):
    """The CapEff bit mask from /proc/self/status text (0 when absent)."""
    for line in status_text.splitlines():
        if line.startswith('CapEff:'):
            return int(line.split(':', 1)[1].strip(), 16)
    return 0


def can_raise(soft, hard, cap_sys_resource, target_hard, nr_open):
    """Whether this process could raise its nofile hard limit to target_hard."""
    result = {'soft': soft, 'hard': hard, 'cap_sys_resource': cap_sys_resource,
              'target_hard': target_hard, 'nr_open': nr_open}
    if target_hard is None:
        result['can_raise'] = bool(cap_sys_resource)
        result['reason'] = ('CAP_SYS_RESOURCE is in CapEff: this process may raise its hard nofile up '
                            'to fs.nr_open (%s)' % nr_open if cap_sys_resource else
                            'no CAP_SYS_RESOURCE in CapEff: this process cannot raise its hard nofile '
                            'above %s' % hard)
    elif target_hard <= hard:
        result['can_raise'] = True
        result['reason'] = ('the current hard limit %s already allows %s: a process can raise its soft '
                            'limit itself' % (hard, target_hard))
    elif cap_sys_resource and (nr_open is None or target_hard <= nr_open):
        result['can_raise'] = True
        result['reason'] = 'CAP_SYS_RESOURCE is in CapEff: this process may raise its hard nofile to %s' % target_hard
    elif cap_sys_resource:
        result['can_raise'] = False
        result['reason'] = '%s is above fs.nr_open (%s): raise fs.nr_open first' % (target_hard, nr_open)
    else:
        result['can_raise'] = False
        result['reason'] = ('no CAP_SYS_RESOURCE in CapEff: this process and its children stay at hard '
                            'nofile %s; only new login sessions (pam_limits) and services (systemd) get '
                            '%s, so a load generator started from here must spread its sockets over '
                            'processes of at most %s each' % (hard, target_hard, hard))
    return result


def read_nr_open(path=NR_OPEN_PATH):
    with open(path) as f:
        return int(f.read().split()[0])
