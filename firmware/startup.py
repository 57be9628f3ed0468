"""The daemon's start-up, kept short: Python's cyclic garbage collector paused until the door reads.

A power cut leaves the door dark until READY (`qrgate bench start`). Start-up
imports the daemon's libraries and builds its parts: some 55,000 objects that
live as long as the daemon, and little garbage (about 3,000 objects). The
collector cannot tell: measured on `qrgate run`, it ran 112 times before
READY, a full collection of 22-33 ms among them, 40-50 ms in all (an eighth
of the start on a 2-core x86 VM; a Pi's share is alike, its times 3-5x).

So `qrgate run` pauses it before it imports the daemon (`pause`), and
`started()`, called once READY has been said (or the loop turns on without a
camera), collects start-up's garbage once, off the door's dark time, then
freezes what is left (`gc.freeze`: moved to a generation no collection walks
again, so a later full collection of the scan loop's life does not walk the
libraries' objects: measured 0.003 ms against 31 ms) and lets the collector
run again. Reference counting frees everything else meanwhile, as always.

A process that did not pause it (the tests, the demo and the benchmarks run
`app.run` in their own) is left as it was: `started()` does nothing there.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """No cyclic collection until `started()`; where the collector is already off, nothing."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def started() -> None:
    """Start-up is over: its garbage collected, what it built frozen, the collector on again. Idempotent."""
    global _paused
    if not _paused:
        return
    _paused = False
    gc.collect()
    gc.freeze()
    gc.enable()
