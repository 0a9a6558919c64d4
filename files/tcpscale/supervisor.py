# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Supervision: inside a half (workers) and around it (the control commands).

Supervisor is what the client and server supervisors share: signals, the
children they fork, lost workers, memory and kernel accounting.

The control commands manage a half where systemd does not run (they were
files/tbctl.py). State lives in RUN_DIR/NAME.json (the pid file): pid, its
process group, the process start time (so that a recycled pid is never
signalled), argv and the nofile limit in force. Every command prints one
JSON object on stdout.

    start  --name N --run-dir D [--log F] [--ready-file F] [--nofile N] [--timeout S] -- ARGV...
        Start ARGV detached (new session, own process group), unless the same
        ARGV already runs under N: then nothing changes. A different ARGV
        under N is stopped first. A supervisor process reaps the child and
        records its exit status in D/N.exit.json.
    run    --name N --run-dir D [--log F] [--nofile N] -- ARGV...
        Run ARGV in the foreground (stderr appended to F) in its own process
        group, keep the pid file while it runs, forward SIGTERM/SIGINT, exit
        with its status. Its stdout is passed through. ARGV gets SIGTERM when
        this process dies (killed with the job of Ansible's async wrapper).
    stop   --name N --run-dir D [--timeout S]
        SIGTERM, wait up to S seconds, then SIGKILL the process group of the
        recorded process (only when that group is its own).
    status --name N --run-dir D [-- ARGV...]
    clean  --name N --run-dir D [--remove F ...]
        Remove the exit file and the given files of an earlier run under N, in one
        step (refused while N runs): a stale status or summary is never read as
        the next run's.
    limits [--nofile N]
        The nofile limit a child would get (raising it when allowed).
    inspect --status-file F [--comm NAME]
        Whether the half writing F runs (its supervisor's pid, from F, is
        alive under the process name NAME), the file's age and its content.
    tail   --log F
        The last non-empty line of F (the latest progress line).
    wait   --status-file S --exit-file E [--log F] [--timeout S] [--hold]
        Wait up to S seconds, returning early when the engine's status file
        says the target is reached or the exit file appears; print what the
        status file says (and the last line of F). With --hold, return early
        only when the exit file appears or the hold broke (a lost worker, or
        more connections lost than the engine's tolerance allows).

Only start and run create the run directory.
"""

import gc
import json
import os
import re
import resource
import select
import signal
import sys
import time
import traceback

from .system import (drain, kernel_snapshot, libc, log, lost_children, pss_of, read_json,
                     set_pdeathsig,
                     write_json_atomic)


# ===================================================== inside a half

def fork_worker(target, parent_pid, *args):
    """Fork a worker running target(parent_pid, *args); the child never returns."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        code = target(parent_pid, *args) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 70
    except BaseException:       # report and die: the supervisor sees a lost worker
        try:
            traceback.print_exc()
        except Exception:
            pass
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)
    return 0    # not reached


def describe_status(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = 'signal %d' % sig
        return 'killed by %s' % name
    if os.WIFEXITED(status):
        return 'exited with code %d' % os.WEXITSTATUS(status)
    return 'status %d' % status


class Supervisor(object):
    """What both halves share: signals, children, memory and kernel accounting."""

    def __init__(self, args, role):
        self.args = args
        self.role = role
        self.pid = os.getpid()
        self.children = {}              # pid -> slot
        self.expected_exit = set()      # pids we asked to stop
        self.lost = []
        self.stop_reason = None
        self.timeline = []
        self.t0 = time.monotonic()
        self.wake_r, self.wake_w = os.pipe()
        self.notify_r, self.notify_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.notify_r, self.notify_w):
            os.set_blocking(fd, False)
        self.signalled = None
        self.poller = select.epoll()
        self.poller.register(self.wake_r, select.EPOLLIN)
        self.poller.register(self.notify_r, select.EPOLLIN)
        self.k0 = kernel_snapshot()
        self.exporter = None
        self.started_at = time.time()

    def export_to(self, exporter):
        """Serve scrapes of exporter (metrics.Exporter) from this loop's waits."""
        self.exporter = exporter
        if exporter.fileno() is not None:
            self.poller.register(exporter.fileno(), select.EPOLLIN)

    def install_signals(self):
        signal.set_wakeup_fd(self.wake_w)

        def on_stop(signum, _frame):
            if self.signalled is None:
                self.signalled = signal.Signals(signum).name
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_stop)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # workers set their own (a wake-up); one just forked ignores it until then
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    def wait(self, timeout):
        try:
            self.poller.poll(max(0.0, timeout))
        except InterruptedError:
            pass
        drain(self.wake_r)
        drain(self.notify_r)
        if self.exporter is not None:
            self.exporter.serve()

    def reap(self, on_lost=None):
        """Collect exited children; unexpected exits are recorded as lost.

        on_lost(pid, slot) returns what the role knows of the lost worker (its
        name and the connections it held), merged into the record.
        """
        for pid, slot, status in lost_children(self.children, self.expected_exit):
            self.record_lost(pid, status, on_lost(pid, slot) if on_lost else {'slot': slot})

    def record_lost(self, pid, status, extra, at=None):
        """One lost worker: what it was, how it ended, when, what it held."""
        at = time.time() if at is None else at
        entry = {'pid': pid, 'how': describe_status(status), 'at': round(at, 3),
                 't': round(time.monotonic() - self.t0 - (time.time() - at), 3)}
        entry.update(extra)
        self.lost.append(entry)
        log('error: worker %s (pid %d) lost: %s, holding %s connection(s); the others keep '
            'holding' % (entry.get('worker', entry.get('slot')), pid, entry['how'],
                         entry.get('held', '?')))
        return entry

    def kernel_bytes(self):
        slab, tcpmem = kernel_snapshot()
        return max(0, (slab - self.k0[0]) + (tcpmem - self.k0[1]))

    def pss_total(self, pids):
        return sum(pss_of(p) for p in pids)

    def stop_children(self, pids, grace):
        """SIGTERM the given children, wait up to grace seconds, then SIGKILL."""
        for pid in pids:
            self.expected_exit.add(pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            self.reap()
            if self.children:
                self.wait(0.05)
        for pid in list(self.children):
            log('worker pid %d did not stop within %.0f s: SIGKILL' % (pid, grace))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.children:
            try:
                pid, _status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.pop(pid, None)

    def emergency_kill(self):
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_lost(self):
        """The error line that names every lost worker (at the end of a half)."""
        log('error: %d worker(s) lost: %s' % (len(self.lost), '; '.join(
            '%s pid %d %s holding %d' % (x['worker'], x['pid'], x['how'], x['held'])
            for x in self.lost)))


def finish(summary, path):
    """The summary: in its file (when asked) and as the last line on stdout."""
    try:
        write_json_atomic(path, summary)
    except OSError as exc:
        log('cannot write the summary file %s: %s' % (path, exc))
    try:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + '\n')
        sys.stdout.flush()
    except OSError as exc:
        # nobody reads stdout any more (the job that started run was killed): the
        # summary file has it; what is left in the buffer goes to /dev/null
        log('cannot print the summary: %s' % exc)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# ===================================================== around a half: the control commands

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
KILL_WAIT = 10.0            # seconds stop waits for the process to go after SIGKILL


def out(obj, code=0):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + '\n')
    sys.stdout.flush()
    return code


def start_time(pid):
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None (no such process, zombie)."""
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


def comm(pid):
    try:
        with open('/proc/%d/comm' % pid) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def pid_paths(args):
    return (os.path.join(args.run_dir, args.name + '.json'),
            os.path.join(args.run_dir, args.name + '.exit.json'))


def unlink(path):
    """Remove path if it is there; whether something was removed."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def running(record):
    """True when the recorded process still runs (same pid, same start time)."""
    if not isinstance(record, dict):
        return False
    pid = record.get('pid')
    return (isinstance(pid, int) and pid > 0 and record.get('start_time') is not None
            and start_time(pid) == record.get('start_time'))


def exit_status(returncode):
    """A child's exit status as a shell reports it: 128 + N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def nofile_towards(wanted):
    """Raise RLIMIT_NOFILE towards wanted; return what is in force and why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    note = None
    if wanted and wanted > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError) as exc:
            note = ('could not raise the hard nofile limit from %d to %d (%s); the engine must '
                    'spread its sockets over processes of at most %d each'
                    % (hard, wanted, exc, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if wanted else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {'soft': soft, 'hard': hard, 'wanted': wanted, 'note': note}


# ------------------------------------------------------------------- stop

def signal_engine(record, sig):
    """sig to the recorded process's group when it leads a group of its own, else to it alone.

    start and run give ARGV a group of its own (the engine and its workers);
    an older run recorded the group of its caller (Ansible's async wrapper),
    which must never be signalled.
    """
    pid = record['pid']
    try:
        if record.get('pgid', pid) == pid and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(record, seconds):
    """Wait up to seconds for the recorded process to end; whether it did."""
    deadline = time.monotonic() + seconds
    while running(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_record(record, timeout):
    """SIGTERM, up to timeout s, SIGKILL (see signal_engine), up to KILL_WAIT s.

    Returns how it ended: 'gone', 'terminated', 'killed', or 'survived' (it still runs).
    """
    try:
        os.kill(record['pid'], signal.SIGTERM)
    except ProcessLookupError:
        return 'gone'
    if wait_gone(record, timeout):
        return 'terminated'
    signal_engine(record, signal.SIGKILL)
    if wait_gone(record, KILL_WAIT):
        return 'killed'
    return 'survived'


def survived(name, record, timeout):
    return out({'name': name, 'changed': True, 'state': 'running', 'how': 'survived',
                'pid': record['pid'], 'failed': True,
                'msg': 'pid %d still runs after SIGTERM, %.0f s, SIGKILL and %.0f s more; '
                       'look at it (ps -o pid,stat,wchan -p %d)'
                       % (record['pid'], timeout, KILL_WAIT, record['pid'])}, 1)


def cmd_stop(args):
    pidfile, _exitfile = pid_paths(args)
    record = read_json(pidfile)
    if not running(record):
        removed = unlink(pidfile)
        result = {'name': args.name, 'changed': removed, 'state': 'stopped'}
        if removed:
            result['msg'] = 'removed a stale pid file (its process no longer runs)'
        return out(result)
    try:
        how = stop_record(record, args.timeout)
    except PermissionError as exc:
        return out({'name': args.name, 'changed': False, 'state': 'running', 'failed': True,
                    'pid': record['pid'], 'msg': 'not allowed to signal pid %d: %s'
                    % (record['pid'], exc.strerror)}, 1)
    if how == 'survived':
        return survived(args.name, record, args.timeout)
    unlink(pidfile)
    return out({'name': args.name, 'changed': True, 'state': 'stopped', 'how': how,
                'pid': record['pid']})


# ------------------------------------------------------------- status, limits

def cmd_status(args):
    pidfile, exitfile = pid_paths(args)
    record = read_json(pidfile)
    alive = running(record)
    result = {'name': args.name, 'running': alive, 'record': record if alive else None,
              'exit': read_json(exitfile)}
    if args.argv:
        result['same'] = bool(alive and record.get('argv') == args.argv)
    return out(result)


def cmd_clean(args):
    pidfile, exitfile = pid_paths(args)
    record = read_json(pidfile)
    if running(record):
        return out({'name': args.name, 'changed': False, 'failed': True,
                    'msg': '%s is running as pid %d: stop it first' % (args.name, record['pid'])}, 2)
    removed = [path for path in [exitfile, pidfile] + list(args.remove) if unlink(path)]
    return out({'name': args.name, 'changed': bool(removed), 'removed': removed})


def cmd_limits(args):
    return out({'nofile': nofile_towards(args.nofile)})


# ------------------------------------------------------------------ start

def own_group():
    """preexec_fn of start: ARGV and its workers in a process group of their own."""
    os.setpgid(0, 0)


def detached_supervisor(args, exitfile, write_fd):
    """The first child of start (never returns): a new session that starts ARGV,
    tells its pid through write_fd, reaps it and records its exit in exitfile."""
    import subprocess       # here, not at the top: see cmd_run
    code = 1
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        logfd = os.open(args.log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, 0)
        os.dup2(logfd, 1)
        os.dup2(logfd, 2)
        child = subprocess.Popen(args.argv, stdin=devnull, stdout=logfd, stderr=logfd,
                                 preexec_fn=own_group, close_fds=True)
        os.write(write_fd, json.dumps({'pid': child.pid}).encode())
        os.close(write_fd)
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        started = time.time()
        rc = exit_status(child.wait())
        write_json_atomic(exitfile, {'rc': rc, 'started': started, 'ended': time.time(),
                                     'argv': args.argv})
        code = 0
    except BaseException as exc:
        try:
            os.write(write_fd, json.dumps({'error': str(exc)}).encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def spawn_detached(args, exitfile):
    """Fork the detached supervisor; (what it says: {'pid': ...} or {'error': ...}, its pid)."""
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read_fd)
        detached_supervisor(args, exitfile, write_fd)
    os.close(write_fd)
    data = b''
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    os.waitpid(first, os.WNOHANG)
    return json.loads(data.decode() or '{}'), first


def cmd_start(args):
    if not args.argv:
        return out({'failed': True, 'msg': 'start: no command given after --'}, 2)
    pidfile, exitfile = pid_paths(args)
    record = read_json(pidfile)
    stopped = None
    if running(record):
        if record.get('argv') == args.argv:
            return out({'name': args.name, 'changed': False, 'state': 'running',
                        'pid': record['pid'], 'nofile': record.get('nofile')})
        stopped = stop_record(record, args.timeout)
        if stopped == 'survived':
            return survived(args.name, record, args.timeout)
    for path in (pidfile, exitfile, args.ready_file):
        if path:
            unlink(path)
    limit = nofile_towards(args.nofile)
    info, supervisor = spawn_detached(args, exitfile)
    if 'pid' not in info:
        return out({'failed': True, 'msg': 'could not start %s: %s'
                    % (args.argv[0], info.get('error', 'unknown error'))}, 1)
    pid = info['pid']
    began = None
    for _attempt in range(50):
        began = start_time(pid)
        if began is not None:
            break
        time.sleep(0.01)
    write_json_atomic(pidfile, {'pid': pid, 'pgid': pid, 'start_time': began, 'argv': args.argv,
                                'started': time.time(), 'nofile': limit, 'supervisor': supervisor})
    return out({'name': args.name, 'changed': True, 'state': 'started', 'pid': pid,
                'nofile': limit, 'replaced': stopped})


# -------------------------------------------------------------------- run

def own_group_dying_with(parent_pid):
    """preexec_fn of run: a process group of its own, and SIGTERM when run dies.

    Ansible's async wrapper ends a job that overruns with SIGKILL to the
    job's process group; ARGV is not in it, so it must learn from the death
    of run (PR_SET_PDEATHSIG, kept across exec) that it has to stop.
    """
    def preexec():
        os.setpgid(0, 0)
        set_pdeathsig(signal.SIGTERM)
        if os.getppid() != parent_pid:      # run died before prctl
            os._exit(1)
    return preexec


def cmd_run(args):
    # subprocess is imported by start and run only: in the halves' supervisors it
    # would cost every forked worker 0.25 MB of private memory (measured at 200,000)
    import subprocess
    if not args.argv:
        return out({'failed': True, 'msg': 'run: no command given after --'}, 2)
    pidfile, exitfile = pid_paths(args)
    record = read_json(pidfile)
    if running(record):
        return out({'failed': True, 'msg': '%s is already running as pid %d; stop it first'
                    % (args.name, record['pid'])}, 2)
    unlink(exitfile)
    limit = nofile_towards(args.nofile)
    libc()                                  # loaded before the fork, used in preexec
    # --log - keeps run's own stderr: under systemd-run, the unit's journal
    with open(os.devnull if args.log == '-' else args.log or os.devnull, 'ab') as logf:
        try:
            child = subprocess.Popen(args.argv, stdin=subprocess.DEVNULL,
                                     stderr=None if args.log == '-' else logf,
                                     preexec_fn=own_group_dying_with(os.getpid()))
        except OSError as exc:
            return out({'failed': True, 'msg': 'could not start %s: %s' % (args.argv[0], exc)}, 1)
        write_json_atomic(pidfile, {'pid': child.pid, 'pgid': child.pid,
                                    'start_time': start_time(child.pid), 'argv': args.argv,
                                    'started': time.time(), 'nofile': limit})

        def forward(signum, _frame):
            child.send_signal(signum)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        started = time.time()
        rc = exit_status(child.wait())
    write_json_atomic(exitfile, {'rc': rc, 'started': started, 'ended': time.time(),
                                 'argv': args.argv})
    unlink(pidfile)
    return rc


# ---------------------------------------------------------- inspect, tail, wait

def cmd_inspect(args):
    """Whether the half that writes a status file runs, and what the file says.

    Works whatever started the half (start, run or a systemd unit): the first
    pid in the status file is the engine's supervisor; it runs when that
    process exists under the engine's process name and the file is not final.
    """
    status = read_json(args.status_file)
    if status is None:
        return out({'exists': False, 'running': False, 'status': {}})
    pids = status.get('pids') or []
    alive = bool(pids) and not status.get('final') and comm(pids[0]) == args.comm
    try:
        age = round(time.time() - os.stat(args.status_file).st_mtime, 1)
    except OSError:
        age = None
    brief = dict((k, v) for k, v in status.items()
                 if k not in ('timeline', 'pids', 'held_per_endpoint'))
    return out({'exists': True, 'running': alive, 'age_s': age, 'status': brief})


def last_line(path):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = [x for x in f.read().decode('utf-8', 'replace').splitlines() if x.strip()]
            return lines[-1] if lines else ''
    except OSError:
        return ''


def cmd_tail(args):
    return out({'line': last_line(args.log)})


def hold_broken(status):
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
        done = read_json(args.exit_file)
        status = read_json(args.status_file) or {}
        early = hold_broken(status) if args.hold else status.get('reached')
        if done is not None or early or time.time() >= deadline:
            break
        time.sleep(0.5)
    lost = status.get('lost_workers') or []
    return out({'finished': done is not None, 'rc': (done or {}).get('rc'),
                'reached': bool(status.get('reached')),
                'established': status.get('established', 0), 'target': status.get('target'),
                'established_at_target': status.get('established_at_target'),
                'dropped': status.get('dropped', 0), 'allowed_loss': status.get('allowed_loss', 0),
                'lost_workers': len(lost), 'broken': hold_broken(status),
                'elapsed_s': status.get('elapsed_s'), 'errors': status.get('errors') or {},
                'workers': status.get('workers'), 'workers_started': status.get('workers_started'),
                'line': last_line(args.log) if args.log else ''})


CONTROL = {'start': cmd_start, 'run': cmd_run, 'stop': cmd_stop, 'status': cmd_status,
           'clean': cmd_clean, 'limits': cmd_limits, 'inspect': cmd_inspect, 'tail': cmd_tail, 'wait': cmd_wait}


def control_main(args):
    """One control command; only start and run create the run directory."""
    if hasattr(args, 'name') and not NAME_RE.match(args.name):
        return out({'failed': True, 'msg': '--name %r: use letters, digits, ".", "_", "-"'
                    % args.name}, 2)
    if args.command in ('start', 'run'):
        os.makedirs(args.run_dir, 0o755, exist_ok=True)
    return CONTROL[args.command](args)
