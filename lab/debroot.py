"""Debian 12 roots of any architecture, entered with proot, to prove our .deb installs and runs without a Pi.

The scanner runs Debian 12 on arm64; CI and laptops are amd64. A root made
by `debootstrap --foreign` and finished by its second stage run under `proot`
(which fakes root, chroot and bind mounts with ptrace) and, for a foreign
architecture, `qemu-aarch64-static` in user mode (proot's `-q`: no binfmt_misc
registration) is a Debian 12 arm64 system a test can `apt-get install
./qrgate.deb` into and run. Nothing here mounts, chroots or registers
binfmt_misc, so it works in CI's container as on a developer's machine; only
debootstrap's first stage wants root (it makes device nodes and owners).

Bootstrapping takes minutes, so the pristine root is cached: a folder per
recipe (architecture, suite, variant, extra packages) under
/var/cache/qrgate-roots (or $QRGATE_ROOTS_CACHE). It is built beside its
final place and renamed there only when complete, under a lock, so an
interrupted build is never reused (its leftovers are removed by the next
build). Each test works in its own copy (`fresh`), made in seconds.

What differs from a booted Debian (and what is done about it):
- proot waits for every process started inside, so a `run` that leaves a
  daemon behind returns only when it ends: start daemons with `Root.popen`
  and end them with `stop` (which finds them by TracerPid, setsid or not);
- no systemd runs: packages' units are enabled (symlinks), never started;
  /usr/sbin/policy-rc.d keeps maintainer scripts from starting init.d
  services, which would hold `apt-get install` open (see above); what a
  unit would have made (RuntimeDirectory=, so /run/mosquitto for its pid
  file) the caller makes before starting the daemon by hand;
- proot 5.1.0 (Debian 12's) does not know statx, faccessat2, openat2 or
  clone3, so a seccomp filter makes them fail with ENOSYS and the C library
  falls back (`_deny_new_syscalls`); it aborts on systemd-tmpfiles' `L`
  lines, so a shim leaves those out (TMPFILES_SHIM); it does not translate the
  address of sendto() on a Unix socket path (sd_notify's way: use an
  abstract @socket for NOTIFY_SOCKET, or connect() then send());
- the network is the host's: a server inside listens on the host's loopback,
  and a port taken outside is taken inside.

    python -m lab.debroot make arm64
    python -m lab.debroot run arm64 --copy /tmp/r -- uname -m
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path("/var/cache/qrgate-roots")
CACHE_ENV = "QRGATE_ROOTS_CACHE"
# Bumped whenever what `make` does to a root changes (`_bootstrap`), so older cached roots are not reused.
RECIPE_VERSION = 3
# Debian's name of an architecture -> what `uname -m` says there, and the user-mode emulator that runs it elsewhere.
ARCHES = {
    "amd64": ("x86_64", "qemu-x86_64-static"),
    "arm64": ("aarch64", "qemu-aarch64-static"),
}
HOST_TOOLS = {"debootstrap": "debootstrap", "proot": "proot", "qemu-aarch64-static": "qemu-user-static",
              "qemu-x86_64-static": "qemu-user-static"}
# Inside the root, nothing of the host's environment: what a root login shell would have, and apt never asking.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
}
# The host's files every command sees (a missing one is skipped): devices, processes, and the name server.
SYSTEM_BINDS = ("/dev", "/proc", "/sys", "/etc/resolv.conf")
# Written into the root (`_bootstrap`):
POLICY_RC_D = "#!/bin/sh\n# lab.debroot: no service is started by a package's maintainer scripts in this root.\nexit 101\n"
APT_CONF = (  # as real root apt manages without it; under proot -0 as a user, its setuid to _apt would fail
    "// lab.debroot: apt's download sandbox user (_apt) cannot drop privileges it never had under proot -0.\n"
    'APT::Sandbox::User "root";\n'
)
# proot 5.1.0 (Debian 12's and Ubuntu 24.04's) predates these system calls and lets them through untranslated: a
# statx or faccessat2 of "/x" inside the root looks at the host's /x (`ls` says no such file, `[ -x ]` is false),
# a clone3 child may escape tracing. The kernel answers ENOSYS to them (`_deny_new_syscalls`), and glibc and
# qemu fall back on the older calls proot knows. Numbers per host: (audit arch, statx); the others are common.
HOST_SYSCALLS = {"x86_64": (0xC000003E, 332), "aarch64": (0xC00000B7, 291)}
CLONE3, OPENAT2, FACCESSAT2 = 435, 437, 439
# proot 5.1.0 aborts (path.c compare_paths2: "Assertion `length2 > 0' failed", taking every process in the root
# with it) when systemd-tmpfiles makes or checks a symlink: an `L` line, like var.conf's /var/run, so the systemd
# package's postinst. dpkg keeps the real one aside (a local diversion, written in `_divert`) and this runs it
# without the paths of `L` lines (those symlinks are not made); everything else is systemd-tmpfiles' own work.
TMPFILES = "/bin/systemd-tmpfiles"
TMPFILES_SHIM = f"""#!/bin/sh
# lab.debroot: {TMPFILES}.real without the symlinks of `L` lines (proot 5.1.0 aborts on them).
for path in $(sed -n 's/^L[+!~]*[[:space:]][[:space:]]*\\([^[:space:]]*\\).*/\\1/p' \\
        /usr/lib/tmpfiles.d/*.conf /etc/tmpfiles.d/*.conf /run/tmpfiles.d/*.conf 2>/dev/null); do
    set -- "--exclude-prefix=$path" "$@"
done
exec {TMPFILES}.real "$@"
"""
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


# Host folders or files seen inside the root: host path -> path inside.
Binds = Mapping[str | os.PathLike[str], str]


class DebrootError(RuntimeError):
    pass


@dataclass(frozen=True)
class Recipe:
    """What a pristine root is made of; two equal recipes share one cached root."""

    arch: str
    suite: str = "bookworm"
    variant: str = "minbase"
    include: tuple[str, ...] = ()  # more packages (with their dependencies), e.g. ("python3", "mosquitto")
    mirror: str = MIRROR

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise DebrootError(f"no architecture {self.arch!r}; known: {', '.join(ARCHES)}")
        object.__setattr__(self, "include", tuple(sorted(set(self.include))))
        if {"systemd", "systemd-sysv"} & set(self.include):
            raise DebrootError("systemd cannot be bootstrapped under proot (TMPFILES_SHIM): apt-get install it in "
                               "the root instead")

    def key(self) -> str:
        """The cache folder's name: readable, and a digest of everything that changes the root's content."""
        inputs = {"version": RECIPE_VERSION, "suite": self.suite, "variant": self.variant,
                  "include": list(self.include), "arch": self.arch}
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.suite}-{self.arch}-{self.variant}-{digest}"


@dataclass(frozen=True)
class Root:
    """A root folder of an architecture; `run` enters it as fake root."""

    path: Path
    arch: str
    binds: Binds = field(default_factory=dict)  # for every command; a `run`'s own come on top

    def command(self, cmd: Sequence[str], binds: Binds | None = None, cwd: str = "/") -> list[str]:
        """The host command line that runs `cmd` inside the root (proot, and qemu for a foreign architecture)."""
        args = [_tool("proot"), "-0", "-r", str(self.path), "-w", cwd]
        emulator = emulator_for(self.arch)
        if emulator:
            args += ["-q", _tool(emulator)]
        for system in SYSTEM_BINDS:
            if os.path.exists(system):
                args += ["-b", system]
        for host, inside in {**self.binds, **(binds or {})}.items():
            args += ["-b", f"{Path(host).resolve()}:{inside}"]
        return args + [str(c) for c in cmd]

    def run(self, cmd: Sequence[str], *, timeout: float = 600, binds: Binds | None = None,
            env: Mapping[str, str] | None = None, input: str | None = None, cwd: str = "/",
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the root and wait for it, and for every process it left running (proot does).

        stdout and stderr are captured as text. At `timeout` seconds, everything started is killed and
        subprocess.TimeoutExpired raised (with the output so far). `check`: a non-zero exit raises
        DebrootError with the output.
        """
        proc = self.popen(cmd, binds=binds, env=env, cwd=cwd, stdin=subprocess.PIPE if input is not None else None)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_all(proc, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and result.returncode != 0:
            raise DebrootError(f"{shlex.join(str(c) for c in cmd)} exited {result.returncode} in {self.path}:\n"
                               f"{_tail(result.stdout)}\n{_tail(result.stderr)}")
        return result

    def popen(self, cmd: Sequence[str], *, binds: Binds | None = None,
              env: Mapping[str, str] | None = None, cwd: str = "/", stdin: int | None = None,
              stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
        """Start `cmd` inside the root, for a daemon that runs beside later `run`s (stop it with `stop`).

        `stop` ends it and every process it started, daemons that left its session too.
        """
        return subprocess.Popen(self.command(cmd, binds, cwd), env=_env(env), text=True, stdin=stdin,
                                stdout=stdout, stderr=stderr, start_new_session=True,
                                preexec_fn=_deny_new_syscalls)

    def write(self, path: str, text: str, mode: int = 0o644) -> Path:
        """Put a file into the root from the host side (`path` as seen inside)."""
        target = self.path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        return target


def stop(proc: subprocess.Popen[str], timeout: float = 10) -> tuple[str, str]:
    """SIGTERM to every process `Root.popen` started, SIGKILL after `timeout`; the output (if captured)."""
    _signal_all(proc, signal.SIGTERM, include_proot=False)  # proot exits when the last of them has
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_all(proc, signal.SIGKILL)
        return proc.communicate()


def emulator_for(arch: str) -> str | None:
    """The qemu-user emulator needed to run `arch` here, or None when the host runs it natively."""
    native, emulator = ARCHES[arch]
    return None if platform.machine() == native else emulator


def missing_tools(arch: str, building: bool = True) -> list[str]:
    """The Debian packages to install on the host before a root of `arch` can be made (building) or run."""
    needed = ["proot"] + (["debootstrap"] if building else [])
    if emulator := emulator_for(arch):
        needed.append(emulator)
    return sorted({HOST_TOOLS[t] for t in needed if shutil.which(t) is None})


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def cached(recipe: Recipe, cache: Path | None = None) -> Path | None:
    """The pristine root of `recipe` if it is complete in the cache, else None (never a half-made one)."""
    root = (cache or cache_dir()) / recipe.key() / "root"
    return root if root.is_dir() else None


def make(recipe: Recipe, cache: Path | None = None, rebuild: bool = False, log: TextIO | None = None) -> Path:
    """The pristine root of `recipe`, bootstrapped into the cache unless it is there; its path. Do not change it.

    One build of a recipe at a time (a lock file per key): a second caller waits, then finds the root made.
    A build runs in a `.build-KEY-*` folder renamed to KEY only when complete; leftovers of an interrupted
    build are removed by the next one. The tools' output goes to build.log beside the root (and to `log` as it
    comes, if given); a failed step's last lines are in the error, its whole log stays until the next build.
    """
    cache = cache or cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DebrootError(f"cannot create the roots cache {cache} ({e.strerror}); set {CACHE_ENV}") from None
    key = recipe.key()
    with _locked(cache / f".{key}.lock"):
        final = cache / key
        if rebuild and final.exists():
            _remove(final)
        if (found := cached(recipe, cache)) is not None:
            return found
        for leftover in cache.glob(f".build-{key}-*"):  # we hold the lock: no build of this key is running
            _remove(leftover)
        if missing := missing_tools(recipe.arch):
            raise DebrootError(f"making the {recipe.arch} root needs: apt-get install {' '.join(missing)}")
        if os.geteuid() != 0:
            raise DebrootError("debootstrap's first stage needs root (it creates device nodes and owners)")
        work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
        work.chmod(0o755)  # mkdtemp makes it private; the cached root is for every user to copy
        try:
            _bootstrap(recipe, work / "root", work / "build.log", log)
        except DebrootError as e:
            raise DebrootError(f"{e}\n(the whole log: {work / 'build.log'})") from None
        (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1) + "\n")
        os.rename(work, final)  # the commit: before it, no root of this key exists
        return final / "root"


def fresh(recipe: Recipe | str, dest: Path, cache: Path | None = None) -> Root:
    """A working copy of the pristine root (made first if need be) at `dest`, which must not exist or be empty."""
    recipe = Recipe(recipe) if isinstance(recipe, str) else recipe
    pristine = make(recipe, cache)
    dest = Path(dest)
    if dest.exists():
        if any(dest.iterdir()):
            raise DebrootError(f"{dest} is not empty: a root is copied into a new or empty folder")
        dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check(["cp", "-a", "--reflink=auto", str(pristine), str(dest)], f"copying the {recipe.arch} root to {dest}")
    return Root(dest, recipe.arch)


def _bootstrap(recipe: Recipe, root: Path, log_path: Path, log: TextIO | None) -> None:
    first = ["debootstrap", "--foreign", f"--arch={recipe.arch}", f"--variant={recipe.variant}"]
    if recipe.include:
        first.append(f"--include={','.join(recipe.include)}")
    first += [recipe.suite, str(root), recipe.mirror]
    with log_path.open("w") as build_log:
        _step(first, build_log, log, "debootstrap's first stage")
        _settle(root)
        second = Root(root, recipe.arch).command(["/debootstrap/debootstrap", "--second-stage"])
        _step(second, build_log, log, "debootstrap's second stage (under proot)")
        _divert(root, TMPFILES, TMPFILES_SHIM)
        # Only now: the second stage puts its own policy-rc.d in place while it runs, and removes it at the end.
        _write(root / "usr" / "sbin" / "policy-rc.d", POLICY_RC_D, 0o755)
        # The host's /dev is bound in whenever the root is entered: the nodes made here would only stop an
        # unprivileged `cp -a` of the root.
        for node in (root / "dev").iterdir():
            _remove(node)
        _remove_contents(root / "var" / "cache" / "apt" / "archives", keep={"partial", "lock"})


def _settle(root: Path) -> None:
    """What the root needs beyond Debian's defaults to work under proot, written before its packages configure."""
    proc = root / "proc"
    if proc.is_symlink():  # the first stage links it to /proc, which proot's binding of /proc would loop on
        proc.unlink()
        proc.mkdir()
    conf = root / "etc" / "apt" / "apt.conf.d" / "00lab-debroot"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(APT_CONF)
    hosts = root / "etc" / "hosts"
    if not hosts.exists():
        hosts.write_text(HOSTS)


def _divert(root: Path, path: str, replacement: str) -> None:
    """Put `replacement` at `path` and have dpkg install the package's own file as `path`.real (if ever)."""
    if (root / path.lstrip("/")).exists():
        raise DebrootError(f"{path} is in the root already: leave its package out of `include`, apt-get it later")
    with (root / "var" / "lib" / "dpkg" / "diversions").open("a") as diversions:
        diversions.write(f"{path}\n{path}.real\n:\n")  # dpkg's format: file, diverted to, package (":" local)
    _write(root / path.lstrip("/"), replacement, 0o755)


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


def _step(cmd: list[str], build_log: TextIO, log: TextIO | None, what: str) -> None:
    """Run one step of the build, its output into the build log (and `log`, as it comes); fail with its tail."""
    started = time.monotonic()
    build_log.write(f"$ {shlex.join(cmd)}\n")
    build_log.flush()
    lines: list[str] = []
    with subprocess.Popen(cmd, env=_env(None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, preexec_fn=_deny_new_syscalls) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines = [*lines[-29:], line]
                build_log.write(line)
                if log is not None:
                    log.write(line)
                    log.flush()
        except BaseException:  # interrupted (Ctrl-C): nothing may go on writing into the half-made root
            _signal_all(proc, signal.SIGKILL)
            raise
    build_log.write(f"# exit {proc.returncode} after {time.monotonic() - started:.0f} s\n")
    build_log.flush()
    if proc.returncode != 0:
        raise DebrootError(f"{what} failed (exit {proc.returncode}):\n{''.join(lines)}")


def _check(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DebrootError(f"{what} failed: {proc.stderr.strip()}")


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # proot's own settings (PROOT_NO_SECCOMP, PROOT_TMP_DIR, PROOT_VERBOSE) pass through from the host.
    env = {k: v for k, v in os.environ.items() if k.startswith("PROOT_")}
    return {**env, **BASE_ENV, **(extra or {})}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DebrootError(f"{name} is not installed (apt-get install {HOST_TOOLS[name]})")
    return path


def _deny_new_syscalls() -> None:
    """In the child, before proot starts: statx, clone3, openat2 and faccessat2 fail with ENOSYS (HOST_SYSCALLS).

    A seccomp filter (classic BPF over seccomp_data: nr at offset 0, arch at 4), inherited by every process
    proot starts; no_new_privs first, as an unprivileged filter requires. Harmless to the debootstrap first
    stage too (its tools fall back the same way).
    """
    machine = platform.machine()
    if machine not in HOST_SYSCALLS:
        return
    audit_arch, statx = HOST_SYSCALLS[machine]
    denied = (statx, CLONE3, OPENAT2, FACCESSAT2)
    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    allow, enosys = 0x7FFF0000, 0x00050000 | 38  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | ENOSYS
    program = [(ld, 0, 0, 4), (jeq, 0, len(denied) + 1, audit_arch), (ld, 0, 0, 0)]
    program += [(jeq, len(denied) - i, 0, nr) for i, nr in enumerate(denied)]
    program += [(ret, 0, 0, allow), (ret, 0, 0, enosys)]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    fprog = SockFprog(len(program), ctypes.addressof(code))
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter for proot")


def _signal_all(proc: subprocess.Popen[str], signum: int, include_proot: bool = True) -> None:
    """Signal proot's tracees (every process in the root, its own session or not; qemu's, for arm64), and proot.

    A daemon that called setsid left proot's process group, and survives proot's death: only the kernel's
    record of who traces whom (TracerPid) finds them all.
    """
    for pid in _tracees(proc.pid) + ([proc.pid] if include_proot else []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _tracees(tracer: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            if f"\nTracerPid:\t{tracer}\n" in status.read_text():
                found.append(int(status.parent.name))
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_contents(folder: Path, keep: set[str]) -> None:
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name not in keep:
                _remove(entry)


def _tail(text: str | None, lines: int = 30) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.debroot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make_p = sub.add_parser("make", help="make the pristine root (or find it cached); print its path")
    run_p = sub.add_parser("run", help="run a command as root in a copy of the root: run ARCH --copy DIR -- CMD…")
    for p in (make_p, run_p):
        p.add_argument("arch", choices=sorted(ARCHES))
        p.add_argument("--include", default="", metavar="PKG,…", help="more packages in the pristine root")
    make_p.add_argument("--rebuild", action="store_true", help="bootstrap again, even if cached")
    run_p.add_argument("--copy", type=Path, required=True, metavar="DIR",
                       help="the working copy: made from the pristine root if DIR is new or empty, else reused")
    run_p.add_argument("--bind", action="append", default=[], metavar="HOST[:INSIDE]",
                       help="a host folder or file seen inside (default: at the same path)")
    run_p.add_argument("--timeout", type=float, default=3600)
    argv = sys.argv[1:] if argv is None else argv
    # What follows `--` is the command, options and all (default: a login shell).
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    recipe = Recipe(args.arch, include=tuple(p for p in args.include.split(",") if p))
    started = time.monotonic()
    try:
        if args.command == "make":
            path = make(recipe, rebuild=args.rebuild, log=sys.stderr)
            print(f"{path}\t{time.monotonic() - started:.1f} s")
            return 0
        return _run_cli(recipe, args, cmd)
    except DebrootError as e:
        print(f"debroot: {e}", file=sys.stderr)
        return 1


def _run_cli(recipe: Recipe, args: argparse.Namespace, cmd: list[str]) -> int:
    copy: Path = args.copy
    if copy.exists() and any(copy.iterdir()):
        root = Root(copy.resolve(), recipe.arch)
    else:
        root = fresh(recipe, copy.resolve())
        print(f"debroot: copied the {recipe.arch} root to {copy}", file=sys.stderr)
    binds: Binds = dict(_bind(spec) for spec in args.bind)
    # By hand, the command talks to the terminal: no capture.
    proc = subprocess.run(root.command(cmd or ["/bin/sh", "-l"], binds), env=_env(None),
                          preexec_fn=_deny_new_syscalls)
    return proc.returncode


def _bind(spec: str) -> tuple[str, str]:
    """HOST:INSIDE, or HOST alone for the same path inside."""
    host, _, inside = spec.partition(":")
    return host, inside or str(Path(host).resolve())


if __name__ == "__main__":
    sys.exit(main())
