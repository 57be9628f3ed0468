#!/bin/bash -e
# pi-gen: SSH by key only, and no password that works for anyone.
# pi-gen's build.sh refuses DISABLE_FIRST_BOOT_USER_RENAME=1 without a
# FIRST_USER_PASS, so image-build/build.sh gives it a random one that nobody
# sees; here it is replaced by a locked, empty hash. The technician logs in with
# the key in PUBKEY_SSH_FIRST_USER and uses sudo (pi-gen's NOPASSWD drop-in).
install -d -m 0755 "${ROOTFS_DIR}/etc/ssh/sshd_config.d"
install -m 0644 files/10-qrgate.conf "${ROOTFS_DIR}/etc/ssh/sshd_config.d/10-qrgate.conf"

on_chroot <<CHROOT
usermod --password '*' root
passwd --lock root
usermod --password '*' "${FIRST_USER_NAME}"
passwd --lock "${FIRST_USER_NAME}"
systemctl enable ssh
CHROOT

if [ ! -s "${ROOTFS_DIR}/home/${FIRST_USER_NAME}/.ssh/authorized_keys" ]; then
	echo "stage-qrgate: /home/${FIRST_USER_NAME}/.ssh/authorized_keys is empty: the image would have no way in (PUBKEY_SSH_FIRST_USER)" >&2
	exit 1
fi
