#!/usr/bin/env bash
# Install qrgate: a venv in /opt/qrgate/venv with the qrgate wheel, the systemd
# units (enabled), the sysusers.d and tmpfiles.d entries, and /etc/qrgate.
#
# One installer for three callers:
#   a technician, on an existing Raspberry Pi OS (Bookworm):
#       sudo image-build/install.sh [--wheel dist/qrgate-X.Y.Z-py3-none-any.whl]
#     (without --wheel, the wheel is built from this checkout);
#   the image build, inside pi-gen's chroot (image-build/stage-qrgate/00-qrgate/01-run.sh):
#       install.sh --no-apt --wheel /tmp/qrgate-install/qrgate-….whl
#   the tests, into a staging folder (nothing outside DIR is touched):
#       install.sh --root DIR --wheel FILE
#
# Running it again is safe: the venv is kept, the wheel is reinstalled (an
# upgrade when it is newer), the units are replaced, /etc/qrgate's contents
# (qrgate.toml, conf.d/*.toml, tls/device.key) are never touched.
set -euo pipefail

prog=install.sh
orig_args=("$@")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$here")

root=/
wheel=
python=python3
apt=auto
site_packages=1
systemd_dir="$checkout/systemd"

usage() {
    cat <<EOF
usage: $prog [--root DIR] [--wheel FILE] [--python PY] [--no-apt]
             [--system-site-packages | --no-system-site-packages] [--systemd-dir DIR]

  --root DIR        install under DIR instead of / (a staging root: no apt, no
                    systemctl against the running system, no users created;
                    systemd-sysusers and systemd-tmpfiles apply them at boot)
  --wheel FILE      the qrgate wheel to install (default: build it from $checkout)
  --python PY       the Python that creates the venv (default: python3, 3.11 or newer)
  --no-apt          do not apt-get install the Debian packages (implied by --root DIR)
  --system-site-packages     the venv sees the OS's Python packages (default; on a Pi
                    picamera2, libcamera and lgpio come from apt this way)
  --no-system-site-packages  an isolated venv
  --systemd-dir DIR where qrgate.service, qrgate-keygen.service, qrgate.sysusers and
                    qrgate.tmpfiles are (default: $checkout/systemd)
EOF
}

say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) need_arg "$@"; root=$2; shift 2 ;;
        --root=*) root=${1#*=}; shift ;;
        --wheel) need_arg "$@"; wheel=$2; shift 2 ;;
        --wheel=*) wheel=${1#*=}; shift ;;
        --python) need_arg "$@"; python=$2; shift 2 ;;
        --python=*) python=${1#*=}; shift ;;
        --systemd-dir) need_arg "$@"; systemd_dir=$2; shift 2 ;;
        --systemd-dir=*) systemd_dir=${1#*=}; shift ;;
        --no-apt) apt=0; shift ;;
        --system-site-packages) site_packages=1; shift ;;
        --no-system-site-packages) site_packages=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[ -n "$root" ] || die "--root needs a folder"
root=$(realpath -m -- "$root")
if [ "$root" = / ]; then
    prefix=
    staging=0
else
    prefix=$root
    staging=1
    apt=0
fi
[ "$apt" = auto ] && apt=1

# The running system is managed through systemctl only when it is this one,
# booted with systemd, and not a chroot (pi-gen's on_chroot).
live=0
if [ "$staging" = 0 ] && [ -d /run/systemd/system ] \
        && ! systemd-detect-virt --quiet --chroot 2>/dev/null; then
    live=1
fi

if [ "$staging" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "installing into / needs root: sudo $0 ${orig_args[*]}  (or --root DIR for a staging folder)"
fi

# --- what is installed, checked before anything is written -------------------
units=(qrgate-keygen.service qrgate.service)
for f in "${units[@]}" qrgate.sysusers qrgate.tmpfiles; do
    [ -f "$systemd_dir/$f" ] || die "missing $systemd_dir/$f (use --systemd-dir DIR)"
done
if [ -n "$wheel" ]; then
    [ -f "$wheel" ] || die "no such wheel: $wheel"
    case "$(basename -- "$wheel")" in
        qrgate-*.whl) ;;
        *) die "$wheel is not a qrgate wheel (qrgate-*.whl)" ;;
    esac
    wheel=$(realpath -- "$wheel")
elif [ ! -f "$checkout/pyproject.toml" ]; then
    die "no --wheel given and $checkout is not a qrgate checkout to build one from"
fi

venv="$prefix/opt/qrgate/venv"
unit_dir="$prefix/usr/lib/systemd/system"
sysusers_conf="$prefix/usr/lib/sysusers.d/qrgate.conf"
tmpfiles_conf="$prefix/usr/lib/tmpfiles.d/qrgate.conf"
etc="$prefix/etc/qrgate"

say "installing qrgate into ${root} ($([ "$staging" = 1 ] && echo "staging root" || echo "this system"))"

# --- Debian packages ---------------------------------------------------------
if [ "$apt" = 1 ]; then
    packages=(python3-venv python3-pip libzbar0)
    # Only Raspberry Pi OS carries these; on plain Debian they do not exist.
    for p in python3-picamera2 python3-lgpio; do
        if apt-cache show "$p" >/dev/null 2>&1; then packages+=("$p"); fi
    done
    say "apt: installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

# --- the venv ------------------------------------------------------------------
if ! command -v "$python" >/dev/null 2>&1; then
    die "$python not found (--python PY)"
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "qrgate needs Python 3.11 or newer ($python is $("$python" --version 2>&1))"

venv_args=()
[ "$site_packages" = 1 ] && venv_args+=(--system-site-packages)
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pip' 2>/dev/null; then
    say "venv: keeping $venv"
    # The option may have changed since the venv was made: only pyvenv.cfg says it.
    want=$([ "$site_packages" = 1 ] && echo true || echo false)
    sed -i -E "s/^(include-system-site-packages[[:space:]]*=[[:space:]]*).*/\\1${want}/" "$venv/pyvenv.cfg"
else
    say "venv: creating $venv${venv_args[*]:+ (${venv_args[*]})}"
    install -d -m 0755 "$(dirname "$venv")"
    "$python" -m venv --clear "${venv_args[@]}" "$venv" \
        || die "could not create the venv (on Debian: apt-get install python3-venv)"
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
export PIP_ROOT_USER_ACTION=ignore

# --- the wheel -------------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$wheel" ]; then
    say "wheel: building one from $checkout"
    "${pip[@]}" wheel -q --no-deps -w "$tmp" "$checkout" || die "could not build the wheel from $checkout"
    wheel=$(find "$tmp" -maxdepth 1 -name 'qrgate-*.whl' -print -quit)
    [ -n "$wheel" ] || die "pip wheel made no qrgate wheel in $tmp"
fi
# With --system-site-packages the venv must not shadow the OS's numpy: the apt
# packages picamera2 imports (simplejpeg) are built against Bookworm's numpy 1.24
# and fail to import under a numpy 2 from PyPI (which today's opencv-python-headless
# asks for). So pip is held to the OS's numpy, and picks an opencv that accepts it.
constraints="$tmp/constraints.txt"
: > "$constraints"
if [ "$site_packages" = 1 ]; then
    os_numpy=$("$python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
    if [ -n "$os_numpy" ]; then
        echo "numpy==$os_numpy" >> "$constraints"
        say "pip: holding numpy at the OS's $os_numpy (system site-packages)"
    fi
fi
say "pip: installing $(basename -- "$wheel") and its dependencies"
"${pip[@]}" install -q -c "$constraints" "$wheel" || die "pip install of $wheel failed"
# The same version with other contents (a rebuilt checkout) must replace the old one too.
"${pip[@]}" install -q --no-deps --force-reinstall "$wheel" || die "pip reinstall of $wheel failed"
version=$("$venv/bin/qrgate" --version 2>&1) || die "$venv/bin/qrgate --version failed: $version"
say "installed: $version ($venv/bin/qrgate)"
# On the PATH of a technician's shell and sudo (secure_path has /usr/local/bin).
install -d -m 0755 "$prefix/usr/local/bin"
ln -sfn /opt/qrgate/venv/bin/qrgate "$prefix/usr/local/bin/qrgate"

# --- systemd files ------------------------------------------------------------------
for u in "${units[@]}"; do
    install -D -m 0644 "$systemd_dir/$u" "$unit_dir/$u"
done
install -D -m 0644 "$systemd_dir/qrgate.sysusers" "$sysusers_conf"
install -D -m 0644 "$systemd_dir/qrgate.tmpfiles" "$tmpfiles_conf"
say "systemd: ${units[*]} in ${unit_dir}, sysusers.d/qrgate.conf, tmpfiles.d/qrgate.conf"

# --- /etc/qrgate (written by `qrgate provision`; its contents are kept) ----------------
install -d -m 0755 "$etc" "$etc/conf.d"
install -d -m 0700 "$etc/tls"
say "config: $etc (conf.d 0755, tls 0700)"

# --- the user, the directories, the enable symlinks -----------------------------------
if [ "$staging" = 0 ]; then
    # On this system (or in the image's chroot): create the qrgate user and the
    # tmpfiles.d entries now, so the units can start without waiting for a reboot.
    systemd-sysusers "${sysusers_conf#"$prefix"}"
    systemd-tmpfiles --create "${tmpfiles_conf#"$prefix"}" \
        || say "warning: systemd-tmpfiles --create reported a problem; it runs again at boot"
else
    say "staging root: users and tmpfiles are applied at boot (systemd-sysusers, systemd-tmpfiles)"
fi

if [ "$live" = 1 ]; then
    systemctl daemon-reload
    systemctl enable "${units[@]}"
elif command -v systemctl >/dev/null 2>&1; then
    # Offline: a staging root, or pi-gen's chroot. No running systemd is contacted.
    systemctl --root="$root" enable "${units[@]}"
else
    # No systemctl at all: the symlinks an `enable` would make, from WantedBy=.
    for u in "${units[@]}"; do
        sed -n -E 's/^WantedBy=//p' "$unit_dir/$u" | tr ' ' '\n' | while read -r target; do
            [ -n "$target" ] || continue
            install -d -m 0755 "$prefix/etc/systemd/system/$target.wants"
            ln -sfn "/usr/lib/systemd/system/$u" "$prefix/etc/systemd/system/$target.wants/$u"
        done
    done
fi
say "enabled: ${units[*]}"

if [ "$live" = 1 ] && systemctl is-active --quiet qrgate.service; then
    say "restarting the running qrgate.service on the new version"
    systemctl try-restart qrgate.service
fi

if [ ! -f "$etc/qrgate.toml" ]; then
    say "next: provision this device (sudo qrgate provision --venue ID --broker mqtts://HOST:PORT ...);"
    say "      qrgate.service starts once $etc/qrgate.toml exists (at the next boot or: sudo systemctl start qrgate)"
fi
say "done"
