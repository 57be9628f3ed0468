"""EU DCC revocation lists at the door: a verified certificate the list in force names is `revoked`.

hashes.py   the EU's three hashes of a DCC and this device's 8-byte lookup key for each
manifest.py the signed manifest (root-signed, read by schema) and the check of a bucket body against it
index.py    a body on disk, opened for lookups: one pread of a 4 KiB page per lookup
store.py    the list in force and the one being assembled beside it (state folder, no rollback)
feed.py     delivery over MQTT: the retained manifest, then each body it wants on its own topic
"""
