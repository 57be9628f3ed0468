"""KC1 printed entry cards on the issuer's side: `qrgate card issue|revoke` (commands.py).

A community centre signs a card for a visitor without a smartphone, prints it
(layout.py places it, pdf.py and png.py draw it), and keeps one line per card
in its register (register.py) under the card's lookup number (number.py), so
that a lost card can be revoked by the number alone (revoked.py: the file the
centre sends to the authority, which `qrgate trust build --revoked-cards` reads).
No module here takes or keeps a person's name.
"""
