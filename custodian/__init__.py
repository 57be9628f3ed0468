"""The reference custodian: the receiving side of the wire, beside the device firmware, not inside it.

It stores sealed visit records it cannot open (ingest, storage, retention) and,
for the health authority only, opens the records of one venue and window
(investigation). Run with `qrgate custodian …`.
"""
