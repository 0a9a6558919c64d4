# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tiny supervisor for the halves of the load engine, where systemd does not run.

The roles copy this file next to tcpscale.py and call it with an argv list
(never a shell string). State lives in RUN_DIR/NAME.json (the pid file):
pid, process start time (so a recycled pid is never signalled), argv and
the nofile limit in force. Standard library only; Python 3.6+.

    tbctl.py start  --name N --run-dir D [--log F] [--ready-file F] [--nofile N] -- ARGV...
        Start ARGV detached (new session, own process group), unless the same
        ARGV already runs under N: then nothing changes. A different ARGV
        under N is stopped first. A supervisor process reaps the child and
        records its exit status in D/N.exit.json.
    tbctl.py run    --name N --run-dir D [--log F] [--nofile N] -- ARGV...
        Run ARGV in the foreground (stderr appended to F), keep the pid file
        while it runs, forward SIGTERM/SIGINT, exit with its status. Its
        stdout is passed through.
    tbctl.py stop   --name N --run-dir D [--timeout S]
        SIGTERM, wait up to S seconds, then SIGKILL the process group.
    tbctl.py status --name N --run-dir D [-- ARGV...]
    tbctl.py limits [--nofile N]
        The nofile limit a child would get (raising it when allowed).
    tbctl.py inspect --status-file F [--comm NAME]
        Whether the half writing F runs (its supervisor's pid, from F, is
        alive under the process name NAME), the file's age and its content.
    tbctl.py tail   --log F
        The last non-empty line of F (the latest progress line).
    tbctl.py wait   --status-file S --exit-file E [--log F] [--timeout S] [--hold]
        Wait up to S seconds, returning early when the engine's status file
        says the target is reached or the exit file appears; print what the
        status file says (and the last line of F). With --hold, return early
        only when the exit file appears or the hold broke (a lost worker, or
        more connections lost than the engine's tolerance allows).

Every command prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


def _out(obj, code=0):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + '\n')
    sys.stdout.flush()
    return code


def _start_time(pid):
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    # the command name is in parentheses and may hold spaces
    rest = data[data.rindex(')') + 2:].split()
    if rest[0] == 'Z':
        return None
    return int(rest[19])


def _paths(args):
    return (os.path.join(args.run_dir, args.name + '.json'),
            os.path.join(args.run_dir, args.name + '.exit.json'))


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, sort_keys=True)
        f.write('\n')
    os.rename(tmp, path)


def _running(record):
    """True when the recorded process still runs (same pid, same start time)."""
    if not record:
        return False
    pid = record.get('pid')
    return isinstance(pid, int) and pid > 0 and _start_time(pid) == record.get('start_time')


def _raise_nofile(wanted):
    """Raise RLIMIT_NOFILE towards wanted; return what is in force and why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    note = None
    if wanted and wanted > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError) as exc:
            note = ('could not raise the hard nofile limit from %d to %d (%s); the engine must '
                    'spread its sockets over processes of at most %d each' % (hard, wanted, exc, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if wanted else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {'soft': soft, 'hard': hard, 'wanted': wanted, 'note': note}


def cmd_limits(args):
    return _out({'nofile': _raise_nofile(args.nofile)})


def cmd_status(args):
    pidfile, exitfile = _paths(args)
    record = _read(pidfile)
    running = _running(record)
    result = {'name': args.name, 'running': running, 'record': record if running else None,
              'exit': _read(exitfile)}
    if args.argv:
        result['same'] = bool(running and record.get('argv') == args.argv)
    return _out(result)


def _stop(record, timeout):
    pid = record['pid']
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 'gone'
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _running(record):
            return 'terminated'
        time.sleep(0.1)
    try:
        os.killpg(record.get('pgid', pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _attempt in range(100):
        if not _running(record):
            break
        time.sleep(0.1)
    return 'killed'


def cmd_stop(args):
    pidfile, _exitfile = _paths(args)
    record = _read(pidfile)
    if not _running(record):
        if record is not None:
            os.unlink(pidfile)
        return _out({'name': args.name, 'changed': False, 'state': 'stopped'})
    how = _stop(record, args.timeout)
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    return _out({'name': args.name, 'changed': True, 'state': 'stopped', 'how': how,
                 'pid': record['pid']})


def cmd_start(args):
    if not args.argv:
        return _out({'failed': True, 'msg': 'start: no command given after --'}, 2)
    pidfile, exitfile = _paths(args)
    record = _read(pidfile)
    stopped = None
    if _running(record):
        if record.get('argv') == args.argv:
            return _out({'name': args.name, 'changed': False, 'state': 'running',
                         'pid': record['pid'], 'nofile': record.get('nofile')})
        stopped = _stop(record, args.timeout)
    for path in (pidfile, exitfile, args.ready_file):
        if path and os.path.exists(path):
            os.unlink(path)
    limit = _raise_nofile(args.nofile)
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        # supervisor: new session, detached from the caller's pipes
        os.close(read_fd)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(args.log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            child = subprocess.Popen(args.argv, stdin=devnull, stdout=log, stderr=log,
                                     preexec_fn=lambda: os.setpgid(0, 0), close_fds=True)
        except OSError as exc:
            os.write(write_fd, json.dumps({'error': str(exc)}).encode())
            os._exit(1)
        os.write(write_fd, json.dumps({'pid': child.pid}).encode())
        os.close(write_fd)
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        started = time.time()
        rc = _exit_status(child.wait())
        _write(exitfile, {'rc': rc, 'started': started, 'ended': time.time(),
                          'argv': args.argv})
        os._exit(0)
    os.close(write_fd)
    data = b''
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    os.waitpid(first, os.WNOHANG)
    info = json.loads(data.decode() or '{}')
    if 'pid' not in info:
        return _out({'failed': True, 'msg': 'could not start %s: %s'
                     % (args.argv[0], info.get('error', 'unknown error'))}, 1)
    pid = info['pid']
    start_time = None
    for _attempt in range(50):
        start_time = _start_time(pid)
        if start_time is not None:
            break
        time.sleep(0.01)
    _write(pidfile, {'pid': pid, 'pgid': pid, 'start_time': start_time, 'argv': args.argv,
                     'started': time.time(), 'nofile': limit, 'supervisor': first})
    return _out({'name': args.name, 'changed': True, 'state': 'started', 'pid': pid,
                 'nofile': limit, 'replaced': stopped})


def cmd_run(args):
    if not args.argv:
        return _out({'failed': True, 'msg': 'run: no command given after --'}, 2)
    pidfile, exitfile = _paths(args)
    record = _read(pidfile)
    if _running(record):
        return _out({'failed': True, 'msg': '%s is already running as pid %d; stop it first'
                     % (args.name, record['pid'])}, 2)
    for path in (exitfile,):
        if os.path.exists(path):
            os.unlink(path)
    limit = _raise_nofile(args.nofile)
    log = open(args.log or os.devnull, 'ab')
    # Same process group as the caller, so that whoever runs us (ansible's
    # async wrapper) can still kill the whole job.
    child = subprocess.Popen(args.argv, stdin=subprocess.DEVNULL, stderr=log)
    _write(pidfile, {'pid': child.pid, 'pgid': os.getpgid(child.pid),
                     'start_time': _start_time(child.pid),
                     'argv': args.argv, 'started': time.time(), 'nofile': limit})

    def forward(signum, _frame):
        child.send_signal(signum)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    started = time.time()
    rc = _exit_status(child.wait())
    _write(exitfile, {'rc': rc, 'started': started, 'ended': time.time(), 'argv': args.argv})
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    log.close()
    return rc


def _exit_status(returncode):
    """A child's exit status as a shell reports it: 128 + N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _comm(pid):
    try:
        with open('/proc/%d/comm' % pid) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def cmd_inspect(args):
    """Whether the half that writes a status file runs, and what the file says.

    Works whatever started the half (this supervisor or a systemd unit): the
    first pid in the status file is the engine's supervisor; it runs when that
    process exists under the engine's process name and the file is not final.
    """
    status = _read(args.status_file)
    if status is None:
        return _out({'exists': False, 'running': False, 'status': {}})
    pids = status.get('pids') or []
    running = bool(pids) and not status.get('final') and _comm(pids[0]) == args.comm
    try:
        age = round(time.time() - os.stat(args.status_file).st_mtime, 1)
    except OSError:
        age = None
    brief = dict((k, v) for k, v in status.items()
                 if k not in ('timeline', 'pids', 'held_per_endpoint'))
    return _out({'exists': True, 'running': running, 'age_s': age, 'status': brief})


def cmd_tail(args):
    return _out({'line': _last_line(args.log)})


def _last_line(path):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = [x for x in f.read().decode('utf-8', 'replace').splitlines() if x.strip()]
            return lines[-1] if lines else ''
    except OSError:
        return ''


def _hold_broken(status):
    """During the hold: a lost worker, or more connections gone than allowed."""
    if status.get('lost_workers'):
        return True
    target = status.get('target') or 0
    allowed = status.get('allowed_loss') or 0
    return bool(status.get('reached')) and target - status.get('established', 0) > allowed


def cmd_wait(args):
    """Wait for the target (default), or, with --hold, through the hold.

    Without --hold it returns early when the status says the target is
    reached or the half ended. With --hold it returns early only when the half
    ended, lost a worker or lost more connections than its tolerance allows.
    """
    deadline = time.time() + args.timeout
    while True:
        done = _read(args.exit_file)
        status = _read(args.status_file) or {}
        early = _hold_broken(status) if args.hold else status.get('reached')
        if done is not None or early or time.time() >= deadline:
            break
        time.sleep(0.5)
    lost = status.get('lost_workers') or []
    return _out({'finished': done is not None, 'rc': (done or {}).get('rc'),
                 'reached': bool(status.get('reached')),
                 'established': status.get('established', 0), 'target': status.get('target'),
                 'established_at_target': status.get('established_at_target'),
                 'dropped': status.get('dropped', 0), 'allowed_loss': status.get('allowed_loss', 0),
                 'lost_workers': len(lost), 'broken': _hold_broken(status),
                 'elapsed_s': status.get('elapsed_s'), 'errors': status.get('errors') or {},
                 'workers': status.get('workers'), 'workers_started': status.get('workers_started'),
                 'line': _last_line(args.log) if args.log else ''})


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if '--' in argv:
        cut = argv.index('--')
        argv, command = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog='tbctl.py', description=__doc__.split('\n', maxsplit=1)[0])
    sub = parser.add_subparsers(dest='cmd')
    sub.required = True
    for name in ('start', 'run', 'stop', 'status'):
        p = sub.add_parser(name)
        p.add_argument('--name', required=True)
        p.add_argument('--run-dir', required=True)
        p.add_argument('--timeout', type=float, default=30.0)
        if name in ('start', 'run'):
            p.add_argument('--log')
            p.add_argument('--nofile', type=int, default=0)
        if name == 'start':
            p.add_argument('--ready-file')
    p = sub.add_parser('limits')
    p.add_argument('--nofile', type=int, default=0)
    p = sub.add_parser('inspect')
    p.add_argument('--status-file', required=True)
    p.add_argument('--comm', default='tcpscale-server', help='process name of the supervisor')
    p = sub.add_parser('tail')
    p.add_argument('--log', required=True)
    p = sub.add_parser('wait')
    p.add_argument('--status-file', required=True)
    p.add_argument('--exit-file', required=True)
    p.add_argument('--log')
    p.add_argument('--timeout', type=float, default=5.0)
    p.add_argument('--hold', action='store_true',
                   help='wait through the hold: return early only when it breaks')
    args = parser.parse_args(argv)
    args.argv = command
    if hasattr(args, 'name') and not NAME_RE.match(args.name):
        return _out({'failed': True, 'msg': '--name %r: use letters, digits, ".", "_", "-"'
                     % args.name}, 2)
    if hasattr(args, 'run_dir'):
        os.makedirs(args.run_dir, 0o755, exist_ok=True)
    return {'start': cmd_start, 'run': cmd_run, 'stop': cmd_stop, 'status': cmd_status,
            'limits': cmd_limits, 'tail': cmd_tail, 'wait': cmd_wait,
            'inspect': cmd_inspect}[args.cmd](args)


if __name__ == '__main__':
    sys.exit(main())
