#!/bin/bash -e
# pi-gen: put the wheel, the systemd files and install.sh into the image, then
# run install.sh inside the image's chroot: the same installer a technician runs
# on an existing Raspberry Pi OS. image-build/build.sh put them in files/.
shopt -s nullglob
wheels=(files/qrgate-*.whl)
if [ "${#wheels[@]}" -ne 1 ]; then
	echo "stage-qrgate: expected exactly one files/qrgate-*.whl (image-build/build.sh puts it there), found ${#wheels[@]}" >&2
	exit 1
fi
wheel=$(basename "${wheels[0]}")
for f in install.sh systemd/qrgate.service systemd/qrgate-keygen.service systemd/qrgate.sysusers systemd/qrgate.tmpfiles; do
	if [ ! -f "files/$f" ]; then
		echo "stage-qrgate: files/$f is missing (image-build/build.sh copies it)" >&2
		exit 1
	fi
done

dest="${ROOTFS_DIR}/tmp/qrgate-install"
rm -rf "${dest}"
install -d "${dest}/image-build" "${dest}/systemd"
install -m 0755 files/install.sh "${dest}/image-build/install.sh"
install -m 0644 files/systemd/* "${dest}/systemd/"
install -m 0644 "files/${wheel}" "${dest}/${wheel}"

# --no-apt: 00-packages installed the Debian packages already. The chroot has no
# running systemd: install.sh enables the units offline and creates the qrgate
# user with systemd-sysusers. The device key is NOT made here: qrgate-keygen.service
# makes it at first boot, on the device, so no two cards share one.
on_chroot <<CHROOT
/tmp/qrgate-install/image-build/install.sh --no-apt --wheel "/tmp/qrgate-install/${wheel}"
rm -rf /tmp/qrgate-install /root/.cache/pip
CHROOT

if [ -e "${ROOTFS_DIR}/etc/qrgate/tls/device.key" ]; then
	echo "stage-qrgate: a device key is in the image; it must only be made at first boot" >&2
	exit 1
fi
