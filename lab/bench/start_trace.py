"""The daemon's start traced from inside: where the time from `main()` to READY goes (`qrgate bench start`).

Run as the first thing of a fresh interpreter (`python -c "from
lab.bench.start_trace import main; main(CONFIG)"`), this module imports only
the standard library, so that every import it times is the daemon's own, in
the daemon's own order: `firmware.cli.main(["run", "--config", CONFIG])`, as
the console script calls it. Nothing of the daemon is changed; its parts are
timed from outside:

- imports: chosen modules (the firmware's command line and composition root,
  and the heavy libraries) are timed from the start to the end of their first
  import by a finder at the head of `sys.meta_path` that wraps their loader.
  Each time is cumulative (what the module imported first, inside it, is
  counted in it too, as in `-X importtime`), so they nest and do not add up;
- steps: names `firmware.app.run` calls (the root key, the LEDs, the trust
  list, the store, the uplink, the camera, the decoder) are wrapped once
  firmware.app is imported, and their first call timed; the camera source's
  opening, its first frame and the first decode are timed on the instance;
- READY: `Notifier.ready` notes the time, then the process sends itself
  SIGTERM, which `qrgate run` answers by stopping, as under systemd.

Times are milliseconds from this module's first line; what the interpreter
took to get there is measured apart (`python -c pass`). A step missing from
the result means app.py no longer calls it by that name: the bench's test
fails then, and this list wants updating.
"""

import importlib.abc
import importlib.machinery
import json
import os
import signal
import sys
import time

T0 = time.perf_counter()

# Modules timed on their first import: the firmware's way to the daemon, and the libraries it loads.
IMPORTS = ("firmware.cli", "firmware.technician.commands", "firmware.app", "firmware.config", "numpy", "cv2",
           "zxingcpp", "pyzbar.pyzbar", "cryptography.x509", "cryptography.hazmat.primitives.asymmetric.ed25519",
           "asn1crypto.x509", "paho.mqtt.client", "gpiozero", "sqlite3", "importlib.metadata",
           "firmware.tokens.trustlist", "firmware.tokens.dcc", "firmware.revocation.store", "firmware.store.buffer",
           "firmware.uplink.link", "firmware.health", "custodian.cli", "lab.cli")

# What firmware.app.run calls on its way to READY, by the name app.py gives it: (step, object path in app).
APP_STEPS = (
    ("the root key read", "keys.load_root_public"),
    ("the LEDs and buzzer claimed (gpiozero)", "GpioFeedback"),
    ("the trust list checked and installed", "TrustStore.offer_file"),
    ("the revocation store opened", "RevocationStore"),
    ("the visit store opened", "open_store"),
    ("the store checked for corrupt copies", "corrupt_stores"),
    ("the uplink built (paho)", "uplinks.connect"),
    ("the uplink started (paho's thread, the drain's)", "uplinks.OnlineLink.start"),
    ("the KP1 verifier built", "Kp1Verifier"),
    ("the DCC verifier built", "DccVerifier"),
    ("the housekeeping's first round (its own thread)", "Housekeeping.turn"),
    ("the decoder built", "DECODERS"),
    ("the camera source made", "open_source"),
)

_ms = lambda t: round((t - T0) * 1000, 2)  # noqa: E731
marks: dict[str, dict] = {}  # step or module -> {"at_ms", "ms"}


def _note(name: str, start: float, end: float) -> None:
    """The first call of a step; of an import, the widest span (cv2's package imports its own native cv2)."""
    ms = round((end - start) * 1000, 2)
    if name not in marks or (name.startswith("import ") and ms > marks[name]["ms"]):
        marks[name] = {"at_ms": _ms(start), "ms": ms}


def _timed(name: str, f):
    """`f`, its first call timed as `name`."""

    def wrapper(*args, **kwargs):
        if name in marks:
            return f(*args, **kwargs)
        start = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            _note(name, start, time.perf_counter())

    return wrapper


class _TimedImports(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a module of IMPORTS, it asks the finders after it and times the loader's run."""

    def __init__(self, after: dict) -> None:
        self.after = after  # module -> what to do once it is imported

    def find_spec(self, name, path, target=None):
        if name not in IMPORTS and name not in self.after:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _TimedLoader(spec.loader, name, self.after.get(name))
                return spec
            if spec is not None:
                return spec
        return None


class _TimedLoader(importlib.abc.Loader):
    def __init__(self, loader, name: str, then) -> None:
        self.loader, self.name, self.then = loader, name, then
        self.start = 0.0

    def create_module(self, spec):  # an extension module's own work (dlopen, its init) is done here
        self.start = time.perf_counter()
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        start = self.start or time.perf_counter()
        self.loader.exec_module(module)
        if self.name in IMPORTS:
            _note(f"import {self.name}", start, time.perf_counter())
        if self.then is not None:
            self.then(module)

    def __getattr__(self, attr):  # get_resource_reader, is_package, …: the real loader's
        return getattr(self.loader, attr)


def _patch(root, dotted: str, step: str) -> bool:
    """Wrap the object at `dotted` under `root` (a module) so that its first call is timed as `step`."""
    *path, last = dotted.split(".")
    owner = root
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return False
    target = getattr(owner, last, None)
    if target is None:
        return False
    if isinstance(target, dict):  # DECODERS: each class made timed, and its instance's first decode
        setattr(owner, last, {k: _timed(step, _decoder(v)) for k, v in target.items()})
    elif dotted == "open_source":
        setattr(owner, last, _timed(step, _source(target)))
    else:
        setattr(owner, last, _timed(step, target))
    return True


def _decoder(cls):
    def make(*args, **kwargs):  # the loop reads with `first` when it has decode workers, else with `decode`
        decoder = cls(*args, **kwargs)
        for read in ("decode", "first"):
            if hasattr(decoder, read):
                setattr(decoder, read, _timed("the first frame decoded", getattr(decoder, read)))
        return decoder

    return make


def _source(open_source):
    """The camera's source, its opening and its first frame timed on the instance (camera.py calls both)."""

    def make(*args, **kwargs):
        source = open_source(*args, **kwargs)
        source.__enter__ = _timed("the camera opened", source.__enter__)
        frames = source.frames

        def first_frame():
            start = time.perf_counter()
            for frame in frames():
                _note("the first frame delivered", start, time.perf_counter())
                yield frame

        source.frames = first_frame
        return source

    return make


def _app_imported(app) -> None:
    missing = [dotted for step, dotted in APP_STEPS if not _patch(app, dotted, step)]
    if missing:
        marks["missing"] = {"names": missing}


def _sdnotify_imported(sdnotify) -> None:
    ready = sdnotify.Notifier.ready

    def timed_ready(self, status: str) -> None:
        if "READY" not in marks:
            marks["READY"] = {"at_ms": _ms(time.perf_counter()), "status": status}
            os.kill(os.getpid(), signal.SIGTERM)  # as systemd stops the unit: `qrgate run` stops its loop
        ready(self, status)

    sdnotify.Notifier.ready = timed_ready


def main(config: str) -> None:
    sys.meta_path.insert(0, _TimedImports({"firmware.app": _app_imported, "firmware.sdnotify": _sdnotify_imported}))
    start = time.perf_counter()
    from firmware import cli

    cli.build_parser = _timed("the command line parsed", cli.build_parser)
    code = cli.main(["run", "--config", config])
    steps = sorted(({"step": k, **v} for k, v in marks.items() if "ms" in v), key=lambda s: s["at_ms"])
    print(json.dumps({"exit": code, "main_at_ms": _ms(start), "ready": marks.get("READY"),
                      "missing": marks.get("missing", {}).get("names", []), "steps": steps}))
