"""One root exception, so callers can catch qrgate's own failures apart from bugs."""


class QrgateError(Exception):
    """Base of every error qrgate raises on purpose."""


class ConfigError(QrgateError, ValueError):
    """A configuration file or value is wrong; the message names the file and key."""


class KeyFileError(QrgateError, ValueError):
    """A key folder or key file is missing or not what it should be."""


class TrustListError(QrgateError, ValueError):
    """A trust list was refused; the old one stays in force."""


class StorageError(QrgateError, OSError):
    """The sealed store could not make a record durable (disk full, I/O error)."""


class RevocationError(QrgateError, ValueError):
    """A DCC revocation list (its manifest or a bucket body) was refused; the list in force stays."""
