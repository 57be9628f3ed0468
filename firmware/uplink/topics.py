"""The topics of DESIGN.md."""

import re

TRUSTLIST = "qrgate/v1/trustlist"
# The DCC revocation list (firmware.revocation): its signed manifest, retained here, and each bucket body it names,
# retained on REVOCATION/<the hex of the body's SHA-256>: up to 1 MiB, so within MAX_PACKET too. The venue `trust`
# is reserved (custodian/broker/add-device.sh): a device of that venue would publish under these topics.
REVOCATION = "qrgate/v1/trust/revocation"
# The largest MQTT packet on a qrgate broker: a signed trust list of 1 MiB (trustlist.MAX_BYTES) on TRUSTLIST,
# with room for its headers. Every client that subscribes takes packets this large, and the shipped broker
# (custodian/broker/mosquitto.conf, max_packet_size) admits nothing larger: Mosquitto 2.0.11 keeps an in-flight
# slot for every QoS 1 message it drops as too large for a client, so a flood of them would stop that client's
# deliveries for good.
MAX_PACKET = (1 << 20) + 1024
# A venue or device id: one topic level (no "/", "+" or "#"), and part of a certificate's CN "venue:device".
ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def visits(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/visits"


def status(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/status"


def passback(venue: str) -> str:
    """The venue's doors share accepted tokens' hashes here (firmware.passback). Four levels: no filter of the
    ingest (qrgate/v1/+/+/visits) or the monitor (qrgate/v1/+/+/status) matches it."""
    return f"qrgate/v1/{venue}/passback"


def revocation_body(digest_hex: str) -> str:
    return f"{REVOCATION}/{digest_hex}"
