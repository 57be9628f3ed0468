"""MQTT v5 to the custodian's broker: sealed visits out, the trust list in."""
