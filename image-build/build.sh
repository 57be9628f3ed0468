#!/usr/bin/env bash
# Build the qrgate SD-card image (Raspberry Pi OS Lite, Bookworm, arm64) with pi-gen.
# Run it on an arm64 Debian host (a Raspberry Pi 4/5 with 64-bit Raspberry Pi OS,
# or an arm64 Debian 12 machine):
#
#   sudo image-build/build.sh --ssh-key ~/.ssh/id_ed25519.pub            # pi-gen natively
#   image-build/build.sh --ssh-key ~/.ssh/id_ed25519.pub --docker        # pi-gen in Docker
#
# It clones pi-gen at a pinned tag into the work folder, builds the arm64 Debian
# package from this checkout (`./dev package arm64`), puts it into stage-qrgate,
# writes pi-gen's config from image-build/config, runs pi-gen, and prints the image.
set -euo pipefail

prog=build.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$here")

# pi-gen's arm64 branch at a Bookworm release tag (its tags are <date>-raspios-<release>-arm64).
pigen_url=https://github.com/RPi-Distro/pi-gen.git
pigen_ref=${PIGEN_REF:-2024-11-19-raspios-bookworm-arm64}
work=$here/work
ssh_key=
deb=
docker=0

usage() {
    cat <<EOF
usage: $prog --ssh-key FILE [--docker] [--work DIR] [--pigen-ref REF] [--deb FILE]

  --ssh-key FILE    the technicians' public key(s), an authorized_keys file: the only
                    way into the image (user "tech", SSH by key, sudo)
  --docker          run pi-gen's build-docker.sh (needs Docker) instead of build.sh (needs root)
  --work DIR        work folder, with no spaces in its path (default: $work)
  --pigen-ref REF   pi-gen tag or branch (default: $pigen_ref; or PIGEN_REF=...)
  --deb FILE        install this qrgate_*_arm64.deb instead of building one from $checkout
EOF
}
say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi; }

while [ $# -gt 0 ]; do
    case "$1" in
        --ssh-key) need_arg "$@"; ssh_key=$2; shift 2 ;;
        --docker) docker=1; shift ;;
        --work) need_arg "$@"; work=$2; shift 2 ;;
        --pigen-ref) need_arg "$@"; pigen_ref=$2; shift 2 ;;
        --deb) need_arg "$@"; deb=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# --- the host ---------------------------------------------------------------------
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$arch" in
    arm64|aarch64) ;;
    *) die "this host is $arch; the image is built natively on an arm64 host (a Pi 4/5 with 64-bit Raspberry Pi OS, or arm64 Debian 12). pi-gen under qemu emulation is not supported here" ;;
esac
if [ "$docker" = 1 ]; then
    command -v docker >/dev/null 2>&1 || die "--docker needs Docker (apt-get install docker.io)"
elif [ "$(id -u)" != 0 ]; then
    die "pi-gen's build.sh runs as root: sudo $0 ... (or --docker)"
fi
command -v git >/dev/null 2>&1 || die "git is missing (apt-get install git)"

# --- the key: the only way into the image ----------------------------------------------
[ -n "$ssh_key" ] || { usage >&2; die "--ssh-key FILE is required: the image has no password"; }
[ -s "$ssh_key" ] || die "no such key file, or empty: $ssh_key"
if grep -q 'PRIVATE KEY' "$ssh_key"; then
    die "$ssh_key is a private key; give the public one (.pub)"
fi
grep -Eq '^(ssh-(ed25519|rsa)|ecdsa-sha2-|sk-(ssh-ed25519|ecdsa-sha2-))' "$ssh_key" \
    || die "$ssh_key does not look like an OpenSSH public key (ssh-ed25519 AAAA...)"
ssh_key=$(realpath -- "$ssh_key")

mkdir -p "$work"
work=$(realpath -- "$work")
case "$work" in *" "*) die "the work folder must not contain spaces (debootstrap): $work" ;; esac
avail_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
if [ "${avail_kb:-0}" -lt $((12 * 1024 * 1024)) ]; then
    say "warning: less than 12 GB free in $work; pi-gen keeps a root filesystem per stage"
fi

# --- pi-gen, pinned --------------------------------------------------------------------
pigen=$work/pi-gen
if [ -d "$pigen/.git" ] && [ "$(git -C "$pigen" describe --tags --exact-match 2>/dev/null || git -C "$pigen" rev-parse --abbrev-ref HEAD)" = "$pigen_ref" ]; then
    say "pi-gen: reusing $pigen ($pigen_ref)"
else
    rm -rf "$pigen"
    say "pi-gen: cloning $pigen_url at $pigen_ref"
    git clone --quiet --depth 1 --branch "$pigen_ref" "$pigen_url" "$pigen"
fi
if [ "$docker" = 0 ] && [ -f "$pigen/depends" ]; then
    # pi-gen's own list, "tool[:debian-package]" per line.
    missing=()
    while IFS=: read -r tool package; do
        [ -n "$tool" ] || continue
        command -v "$tool" >/dev/null 2>&1 || missing+=("${package:-$tool}")
    done < "$pigen/depends"
    if [ ${#missing[@]} -gt 0 ]; then
        die "pi-gen needs: apt-get install ${missing[*]}"
    fi
fi

# --- the package and the stage -------------------------------------------------------------
if [ -z "$deb" ]; then
    rm -rf "$work/dist"
    say "package: building the arm64 .deb from $checkout (./dev package: the lock's wheels)"
    "$checkout/dev" package arm64 --out "$work/dist"
    deb=$(find "$work/dist" -maxdepth 1 -name 'qrgate_*_arm64.deb' -print -quit)
    [ -n "$deb" ] || die "./dev package made no qrgate_*_arm64.deb"
fi
[ -f "$deb" ] || die "no such package: $deb"
case "$(basename -- "$deb")" in
    qrgate_*_arm64.deb) ;;
    *) die "$deb is not qrgate's arm64 package (qrgate_*_arm64.deb)" ;;
esac

stage=$pigen/stage-qrgate
rm -rf "$stage"
cp -a "$here/stage-qrgate" "$stage"
files=$stage/00-qrgate/files
install -d "$files"
install -m 0644 "$deb" "$files/"
# Only stage-qrgate exports an image; stage2's own Lite image is not wanted.
touch "$pigen/stage2/SKIP_IMAGES"

# --- pi-gen's config -----------------------------------------------------------------------
vars=(IMG_NAME RELEASE ARCH DEPLOY_COMPRESSION TARGET_HOSTNAME TIMEZONE_DEFAULT STAGE_LIST
      FIRST_USER_NAME FIRST_USER_PASS DISABLE_FIRST_BOOT_USER_RENAME PASSWORDLESS_SUDO
      ENABLE_SSH PUBKEY_ONLY_SSH PUBKEY_SSH_FIRST_USER)
config=$pigen/config
trap 'rm -f "$config"' EXIT  # it holds the throwaway password until the build is over
install -m 0600 /dev/null "$config"
(
    export QRGATE_SSH_PUBKEY_FILE=$ssh_key
    # shellcheck source=/dev/null
    source "$here/config"
    echo "# written by qrgate's image-build/build.sh from image-build/config"
    for v in "${vars[@]}"; do printf '%s=%q\n' "$v" "${!v}"; done
) > "$config"

# --- build -------------------------------------------------------------------------------------
say "building the image with pi-gen $pigen_ref (an hour or more)"
cd "$pigen"
if [ "$docker" = 1 ]; then
    ./build-docker.sh
else
    ./build.sh
fi

image=$(find "$pigen/deploy" -maxdepth 1 -name '*qrgate*.img*' -newer "$config" -print 2>/dev/null | sort | tail -n 1)
[ -n "$image" ] || die "pi-gen finished but no qrgate image is in $pigen/deploy"
say "image: $image"
say "flash it: xzcat '$image' | sudo dd of=/dev/sdX bs=4M conv=fsync status=progress  (or Raspberry Pi Imager, 'Use custom', no OS customisation)"
