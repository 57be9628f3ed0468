"""qrgate: the firmware of the entrance scanner appliance."""

__version__ = "0.1.0"
