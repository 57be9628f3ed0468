"""A certificate's extended key usage (EKU), read even where cryptography refuses the certificate's extensions.

cryptography reads a certificate's extensions all at once, and strictly: when
it finds one malformed (Finland's DCC document signers write out
BasicConstraints' cA FALSE, a default DER leaves out), one repeated, or an EKU
naming no purpose (RFC 5280 asks for one at least), it reads none of them, the
EKU included. A document signer's key usage must still be judged
(`tokens.dcc`), so where cryptography refuses, the EKU alone is read from the
tbsCertificate with asn1crypto, which leaves the other extensions unjudged.
That reading is strict where the EKU's own meaning is at stake: one EKU
extension at most, its value exactly one SEQUENCE OF OBJECT IDENTIFIER, each
identifier in its one X.690 encoding (asn1crypto would read a padded or cut one
as some other identifier). Where cryptography reads the extensions, its reading
(kept on the certificate) is used: the same answer, without the tenth of a
millisecond asn1crypto takes. asn1crypto itself is imported only then: the
daemon's start does not wait for it (5-8 ms here, `qrgate bench start`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509

if TYPE_CHECKING:
    from asn1crypto import core

EKU = x509.oid.ExtensionOID.EXTENDED_KEY_USAGE.dotted_string
_EKU_ID = b"\x55\x1d\x25"  # 2.5.29.37's content octets (X.690: 2*40+5, 29, 37); tests check asn1crypto agrees


def purposes(cert: x509.Certificate) -> frozenset[str] | None:
    """The OIDs (dotted) the certificate's EKU names: none when it has no EKU or an empty one; None when
    what it names cannot be told (two EKU extensions, or one whose value is no SEQUENCE OF OIDs)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    except Exception:  # noqa: BLE001 - ValueError, x509.DuplicateExtension: refused, so the EKU read alone
        return from_der(cert.tbs_certificate_bytes)
    return frozenset(oid.dotted_string for oid in usage)


def from_der(tbs: bytes) -> frozenset[str] | None:
    """purposes() of a DER tbsCertificate, whatever its other extensions hold."""
    from asn1crypto import x509 as asn1_x509

    try:
        values = [ext["extn_value"].contents for ext in asn1_x509.TbsCertificate.load(tbs)["extensions"]
                  if ext["extn_id"].contents == _EKU_ID]
        if len(values) > 1:
            return None  # RFC 5280 allows one; which one the issuer meant cannot be told
        if not values:
            return frozenset()
        return frozenset(_dotted(oid) for oid in asn1_x509.ExtKeyUsageSyntax.load(values[0], strict=True))
    except ValueError:  # asn1crypto's answer to anything malformed, and _dotted's
        return None


def _dotted(oid: core.ObjectIdentifier) -> str:
    """The identifier's dotted form, if its octets are that form's one encoding; else ValueError, as asn1crypto
    raises for an identifier of no octets at all."""
    from asn1crypto import core

    dotted: str = oid.dotted
    if core.ObjectIdentifier(dotted).contents != oid.contents:
        raise ValueError
    return dotted
