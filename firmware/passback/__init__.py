"""Anti-passback across a venue's doors: a token green at one door is `replayed_elsewhere` at the next.

The devices of one venue tell each other, over the broker's venue topic, a keyed
hash of each token they accept (`secret`), in a small fixed message (`message`);
each keeps what its peers said until the token's window ends (`memory`). `share`
ties these to the door: a verifier that answers from the peers' memory and a gate
that shares what it made durable and green.
"""
