#!/bin/bash -e
# pi-gen: install the qrgate Debian package inside the image's chroot, with apt,
# exactly as a technician installs it on an existing Raspberry Pi OS
# (image-build/build.sh put the arm64 package in files/).
shopt -s nullglob
debs=(files/qrgate_*_arm64.deb)
if [ "${#debs[@]}" -ne 1 ]; then
	echo "stage-qrgate: expected exactly one files/qrgate_*_arm64.deb (image-build/build.sh puts it there), found ${#debs[@]}" >&2
	exit 1
fi
deb=$(basename "${debs[0]}")
install -D -m 0644 "files/${deb}" "${ROOTFS_DIR}/tmp/qrgate-install/${deb}"

# The chroot has no running systemd: the package's postinst creates the qrgate user
# (systemd-sysusers) and enables the units offline (deb-systemd-helper). The device
# key is NOT made here: qrgate-keygen.service makes it at first boot, on the device,
# so no two cards share one.
on_chroot <<CHROOT
apt-get install -y --no-install-recommends /tmp/qrgate-install/${deb}
rm -rf /tmp/qrgate-install
CHROOT

if [ -e "${ROOTFS_DIR}/etc/qrgate/tls/device.key" ]; then
	echo "stage-qrgate: a device key is in the image; it must only be made at first boot" >&2
	exit 1
fi
