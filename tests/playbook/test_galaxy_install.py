"""The collection as Galaxy users meet it: built into a tarball, installed
into an empty collections path, and used by FQCN from a directory outside
this repository.

Real commands only: ansible-galaxy, ansible-doc and ansible-playbook from the
project's virtual environment, with every ANSIBLE_* variable and PYTHONPATH of
the caller removed, so the checkout (and its .collections link) cannot leak in.
Runs as root (the provisioning run creates namespaces and sets sysctls).
"""

import fcntl
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FQCN = "scalelab.testbed"

# Never in the tarball: environments, caches, scratch, outputs, dev tooling.
FORBIDDEN = [
    ".venv", ".venv/*", ".collections", ".collections/*", ".cache", ".cache/*",
    ".ansible", ".ansible/*", "*/.ansible/*", ".ci", ".ci/*", ".git", ".git/*",
    ".gitignore", "ansible.cfg", "requirements.txt",
    "*__pycache__*", "*.pyc", "*.pytest_cache*", "*.tar.gz", "*.log",
    "images", "images/*", "reports", "reports/*", "build", "build/*",
    "molecule", "molecule/*", "scripts", "scripts/*", "benchmarks", "benchmarks/*",
    "tests/output", "tests/output/*", "importer_result.json",
]
# Everything under these (as tracked or new in git) must ship.
SHIPPED_TREES = ["plugins", "roles", "playbooks", "files", "meta", "docs", "changelogs",
                 "inventory", "tests"]


def run(argv, cwd, env, timeout=600):
    """Run argv (a list, no shell) in cwd; return the CompletedProcess."""
    # PWD as a shell would set it: the roles put reports/ under $PWD.
    env = dict(env, PWD=str(cwd))
    proc = subprocess.run([str(a) for a in argv], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc


def must(proc):
    assert proc.returncode == 0, (
        "command failed (rc=%d): %s\n--- stdout\n%s\n--- stderr\n%s"
        % (proc.returncode, " ".join(proc.args), proc.stdout[-6000:], proc.stderr[-6000:]))
    return proc


def user_env(collections_path=None):
    """The caller's environment without any ANSIBLE_* variable or PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANSIBLE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "%s:%s" % (BIN, env.get("PATH", "/usr/bin:/bin"))
    env["ANSIBLE_NOCOLOR"] = "1"
    if collections_path is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    return env


def repo_files():
    """Files git would give a fresh clone plus new, non-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=str(REPO), capture_output=True, check=True).stdout
    return {p for p in out.decode().split("\0") if p and (REPO / p).is_file()}


def repo_modules():
    return sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py")
                  if p.stem != "__init__")


def repo_roles_with_specs():
    return sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/meta/argument_specs.yml"))


@pytest.fixture(scope="module")
def scratch():
    """A temporary directory outside the repository, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tbg-galaxy-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tarball(scratch):
    out = scratch / "build"
    out.mkdir()
    must(run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out, REPO],
             cwd=out, env=user_env()))
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    path = out / ("scalelab-testbed-%s.tar.gz" % version)
    assert path.is_file(), "build did not produce %s: %s" % (path, os.listdir(out))
    return path


@pytest.fixture(scope="module")
def installed(tarball, scratch):
    """(collections path, working directory outside the repo, environment)."""
    base = scratch / "user"
    collections = base / "collections"
    work = base / "work"
    work.mkdir(parents=True)
    env = user_env(collections)
    must(run([BIN / "ansible-galaxy", "collection", "install", tarball, "-p", collections],
             cwd=work, env=env))
    assert not str(work).startswith(str(REPO))
    return collections, work, env


def tar_names(path):
    with tarfile.open(path) as tar:
        return {m.name for m in tar.getmembers()}, {m.name for m in tar.getmembers() if m.isfile()}


def test_tarball_has_no_scratch(tarball):
    names, _files = tar_names(tarball)
    bad = sorted(n for n in names if any(fnmatch.fnmatch(n, pat) for pat in FORBIDDEN))
    assert not bad, "build_ignore in galaxy.yml lets these into the tarball: %s" % bad
    with tarfile.open(tarball) as tar:
        links = [m.name for m in tar.getmembers() if m.issym() or m.islnk()]
    assert not links, "symlinks in the tarball: %s" % links


def test_tarball_ships_the_collection(tarball):
    _names, files = tar_names(tarball)
    for required in ["MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml",
                     "files/tcpscale/__main__.py", "files/tcpscale/ipplan.py", "playbooks/site.yml", "playbooks/teardown.yml",
                     "docs/tuning.md", "docs/troubleshooting.md", "CHANGELOG.rst"]:
        assert required in files, "%s missing from the tarball" % required
    expected = {p for p in repo_files() if p.split("/", 1)[0] in SHIPPED_TREES
                and not any(fnmatch.fnmatch(p, pat) for pat in FORBIDDEN)}
    missing = sorted(expected - files)
    assert not missing, "files of the collection left out of the tarball: %s" % missing
    # Nothing but what git knows (tracked or new, not ignored) and the build's own metadata.
    unknown = sorted(files - repo_files() - {"MANIFEST.json", "FILES.json"})
    assert not unknown, "files in the tarball that git ignores (scratch?): %s" % unknown


def test_manifest_metadata(tarball):
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (info["namespace"], info["name"], info["version"]) == ("scalelab", "testbed",
                                                                  galaxy["version"])
    major, minor, patch = info["version"].split(".")
    assert all(x.isdigit() for x in (major, minor, patch)), "version is not semantic"
    for field in ("description", "license", "repository", "tags", "authors", "readme"):
        assert info[field], "galaxy.yml: %s is empty" % field
    assert info["dependencies"] == {}, (
        "dependencies need a Galaxy server to install; this one has none: %s"
        % info["dependencies"])


def test_installed_from_tarball_only(installed):
    collections, work, env = installed
    proc = must(run([BIN / "ansible-galaxy", "collection", "list", FQCN, "--format", "json"],
                    cwd=work, env=env))
    found = json.loads(proc.stdout)
    paths = [p for p, cols in found.items() if FQCN in cols]
    assert paths == [str(collections / "ansible_collections")], (
        "scalelab.testbed must resolve only from the installed tarball, found in %s" % paths)


def test_ansible_doc_lists_every_module(installed):
    collections, work, env = installed
    modules = repo_modules()
    assert modules, "no modules in plugins/modules"
    proc = must(run([BIN / "ansible-doc", "-l", FQCN, "--json"], cwd=work, env=env))
    listed = sorted(k.split(".")[-1] for k in json.loads(proc.stdout))
    assert listed == modules
    # Each module's documentation loads, from the installed copy.
    proc = must(run([BIN / "ansible-doc", "--json"] + ["%s.%s" % (FQCN, m) for m in modules],
                    cwd=work, env=env))
    docs = json.loads(proc.stdout)
    for m in modules:
        doc = docs["%s.%s" % (FQCN, m)]["doc"]
        assert doc["filename"].startswith(str(collections)), doc["filename"]
        assert doc["short_description"] and doc["options"] is not None


def test_ansible_doc_shows_each_role_entry_point(installed):
    _collections, work, env = installed
    roles = repo_roles_with_specs()
    assert roles, "no roles/*/meta/argument_specs.yml in the repository yet"
    proc = must(run([BIN / "ansible-doc", "-t", "role", "-l", FQCN, "--json"], cwd=work, env=env))
    listed = json.loads(proc.stdout)
    assert sorted(k.split(".")[-1] for k in listed) == roles, listed
    for role in roles:
        spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
        proc = must(run([BIN / "ansible-doc", "-t", "role", "--json", "%s.%s" % (FQCN, role)],
                        cwd=work, env=env))
        entry_points = json.loads(proc.stdout)["%s.%s" % (FQCN, role)]["entry_points"]
        assert sorted(entry_points) == sorted(spec["argument_specs"]), role
        for name, want in spec["argument_specs"].items():
            got = entry_points[name]
            assert got.get("short_description"), "%s:%s has no short_description" % (role, name)
            assert sorted(got.get("options") or {}) == sorted(want.get("options") or {}), \
                (role, name)
        # The human-readable form a user reads.
        text = must(run([BIN / "ansible-doc", "-t", "role", "%s.%s" % (FQCN, role)],
                        cwd=work, env=env)).stdout
        shown = re.findall(r"^ENTRY POINT: \*?([\w-]+)\*? - (.+)$", text, re.M)
        shown_names = sorted(entry for entry, _desc in shown)
        assert shown_names == sorted(spec["argument_specs"]), text[:2000]


# --- the playbooks, from the installed collection ---------------------------

# Keys the tuning role reads and may raise on the host (the per-namespace keys
# live in the testbed's own namespaces, which vanish at teardown).
HOST_KEYS = ["fs.file-max", "fs.nr_open", "net.core.netdev_max_backlog", "net.core.somaxconn",
             "net.ipv4.ip_local_port_range", "net.ipv4.tcp_child_ehash_entries",
             "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_max_tw_buckets",
             "net.ipv4.tcp_tw_reuse", "net.netfilter.nf_conntrack_max"]
LIMITS_FILE = Path("/etc/security/limits.d/90-tbg-galaxy.conf")
NETNS = ("tbg-gsrv", "tbg-gcli")


def host_state():
    """What a provisioning run could change on this host, read from the kernel."""
    values = {}
    for key in HOST_KEYS:
        path = Path("/proc/sys") / key.replace(".", "/")
        values[key] = " ".join(path.read_text().split()) if path.exists() else None
    hashsize = Path("/sys/module/nf_conntrack/parameters/hashsize")
    values["hashsize"] = hashsize.read_text().strip() if hashsize.exists() else None
    netns = Path("/run/netns")
    values["netns"] = sorted(n for n in (os.listdir(netns) if netns.is_dir() else [])
                             if n in NETNS)
    values["limits_file"] = LIMITS_FILE.exists()
    return values


@pytest.fixture(scope="module")
def heavy_lock():
    """The machine-wide lock: these runs change global keys that other tests snapshot."""
    with open("/tmp/scalelab-heavy.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def one_box(installed, heavy_lock):
    """An inventory and variables for the one-box default with this test's own names.

    localhost in both groups, the venv's Python (it has pyroute2), and every
    path and name of the testbed moved under the scratch directory or the
    tbg- prefix, so that other runs on this machine are not disturbed.
    """
    if os.geteuid() != 0:
        pytest.fail("the provisioning tests need root (namespaces, sysctls)")
    collections, work, env = installed
    base = work.parent
    inventory = work / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": sys.executable}},
        "children": {"servers": {"hosts": {"localhost": None}},
                     "clients": {"hosts": {"localhost": None}}}}}))
    state, opt, rund = base / "state", base / "opt", base / "run"
    variables = {
        "topology_netns_server": NETNS[0], "topology_netns_client": NETNS[1],
        "topology_veth_server": "tbg-gs", "topology_veth_client": "tbg-gc",
        # the paths every role shares, defined once (role scalelab.testbed.testbed)
        "testbed_state_dir": str(state), "testbed_install_dir": str(opt),
        "testbed_run_dir": str(rund), "tuning_limits_path": str(LIMITS_FILE),
    }
    (work / "vars.yml").write_text(yaml.safe_dump(variables))
    return {"work": work, "env": env, "state": state, "opt": opt, "run": rund,
            "argv": ["-i", inventory, "-e", "@" + str(work / "vars.yml")]}


def playbook(one_box, name, *extra):
    return run([BIN / "ansible-playbook"] + one_box["argv"] + ["%s.%s" % (FQCN, name)]
               + list(extra), cwd=one_box["work"], env=one_box["env"], timeout=1200)


def recap(proc):
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP lines."""
    out = {}
    for host, fields in re.findall(r"^(\S+)\s+: (ok=.*)$", proc.stdout, re.M):
        out[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return out


def test_provision_check_mode_from_outside_changes_nothing(one_box):
    before = host_state()
    proc = must(playbook(one_box, "site", "--check", "--skip-tags", "load",
                         "-e", "testbed_connections=1000"))
    counts = recap(proc)
    assert counts.get("localhost", {}).get("failed") == 0, proc.stdout[-3000:]
    assert host_state() == before, "check mode changed the host"
    for path in (one_box["state"], one_box["opt"], one_box["run"]):
        assert not path.exists(), "check mode created %s" % path


def test_site_and_teardown_from_outside(one_box):
    """A small real run from the installed collection, then teardown restores the host."""
    before = host_state()
    assert not before["netns"], "leftover namespaces %s from an earlier run" % before["netns"]
    target = 2000
    try:
        proc = must(playbook(one_box, "site", "-e", "testbed_connections=%d" % target))
        assert recap(proc)["localhost"]["failed"] == 0
        report = json.loads((one_box["work"] / "reports" / "latest" / "report.json").read_text())
        assert report["target"] == target
        assert report["verified"] >= target, report
        assert (one_box["work"] / "reports" / "latest" / "report.html").is_file()
        assert sorted(host_state()["netns"]) == sorted(NETNS)
        # Provisioning again changes nothing.
        again = must(playbook(one_box, "site", "--skip-tags", "load",
                              "-e", "testbed_connections=%d" % target))
        assert recap(again)["localhost"]["changed"] == 0, again.stdout[-4000:]
    finally:
        journal_path = one_box["state"] / "journal.json"
        journal = json.loads(journal_path.read_text()) if journal_path.exists() else {}
        down = playbook(one_box, "teardown", "-e", "testbed_connections=%d" % target)
        after = host_state()
        if after["netns"]:  # leave nothing behind, even when teardown failed
            for name in after["netns"]:
                subprocess.run(["ip", "netns", "delete", name], check=False)
    must(down)
    entries = journal.get("entries", {})
    assert entries.get("sysctl"), "the run recorded no sysctl in its journal: %s" % journal
    # one record of everything: the namespaces, veths, aliases and installed paths too
    assert sorted(entries.get("netns", {})) == sorted(NETNS), journal
    assert entries.get("link") and entries.get("aliases") and entries.get("path"), journal
    for path in entries.get("path", {}):
        assert not os.path.exists(path), "teardown left %s" % path
    # Every host value the run recorded is back (namespaced ones went with the namespaces).
    for jkey, entry in entries.get("sysctl", {}).items():
        scope, key = jkey.split("|", 1)
        if scope == "-":
            path = Path("/proc/sys") / key.replace(".", "/")
            now = " ".join(path.read_text().split())
            assert now == " ".join(str(entry["previous"]).split()), key
    for path, entry in entries.get("file", {}).items():
        if entry["previous"] is None:
            assert not os.path.exists(path), "teardown left %s" % path
        else:
            assert Path(path).read_text() == entry["previous"], path
    assert not journal_path.exists(), "teardown kept its journal"
    # The whole snapshot (also what was not journaled). Another run on this
    # machine that changes global keys at the same time can disturb this.
    assert after == before, "teardown did not restore the host"
