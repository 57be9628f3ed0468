#!/bin/sh
# Give one scanner its place on the custodian's broker, live: its certificate's CN VENUE:DEVICE may then
# publish under qrgate/v1/VENUE/DEVICE/ (visits, status, its will), read the trust list and the DCC revocation
# list, and share accepted tokens' hashes with its venue's other doors on qrgate/v1/VENUE/passback
# (anti-passback), nothing else.
#
#   MOSQUITTO_CTRL_ARGS="-h broker.example -p 8883 --cafile ca.pem --cert admin.crt --key admin.key" \
#       add-device.sh cafe-1:door-1
#
# The admin certificate's CN is custodian:admin (dynamic-security.json). The client's password is random
# and never used: the broker knows a client by its certificate.
set -eu
usage() { echo "usage: $0 VENUE:DEVICE (each 1-64 of A-Z a-z 0-9 . _ -)" >&2; exit 2; }
[ $# -eq 1 ] || usage
cn=$1
echo "$cn" | grep -Eqx '[A-Za-z0-9._-]{1,64}:[A-Za-z0-9._-]{1,64}' || usage
venue=${cn%%:*}
device=${cn#*:}
# The venue `custodian` is the custodian's own processes (an ingest's status, docs/monitoring.md); under the
# venue `trust` lives the DCC revocation list (qrgate/v1/trust/revocation/#), which only the authority writes.
case "$venue" in custodian|trust) echo "$0: the venue $venue is reserved" >&2; exit 2 ;; esac
ctl() {
    # shellcheck disable=SC2086  # the options are words on purpose
    mosquitto_ctrl ${MOSQUITTO_CTRL_ARGS:?names the broker and the admin certificate} dynsec "$@"
}
ctl createRole "device:$cn"
ctl addRoleACL "device:$cn" publishClientSend "qrgate/v1/$venue/$device/#" allow
# One role per venue, made with its first device: publish, subscribe and receive on that venue's topic only.
# (mosquitto_ctrl 2.0 exits 0 on a refusal too: a role that exists is one getRole names.)
if ! ctl getRole "passback:$venue" 2>/dev/null | grep -q '^Rolename:'; then
    ctl createRole "passback:$venue"
    ctl addRoleACL "passback:$venue" publishClientSend "qrgate/v1/$venue/passback" allow
    ctl addRoleACL "passback:$venue" publishClientReceive "qrgate/v1/$venue/passback" allow
    ctl addRoleACL "passback:$venue" subscribeLiteral "qrgate/v1/$venue/passback" allow
fi
ctl createClient "$cn" -p "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
ctl addClientRole "$cn" device
ctl addClientRole "$cn" "device:$cn"
ctl addClientRole "$cn" "passback:$venue"
