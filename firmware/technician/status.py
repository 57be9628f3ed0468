"""`qrgate status [--json]`: the device's health at a glance, for a technician over SSH.

Two witnesses, so a dead daemon cannot hide behind its last report: what the
daemon itself last wrote to the runtime folder (camera, frames per second,
decode time, broker, its faults — stale or missing means it is not running),
and what this command reads for itself (the store's queue and integrity, the
trust list, the DCC revocation list's files, the clock, free space, CPU
temperature and throttling). Whether a revocation list is missing or too old
is the daemon's fault `dcc_revocation` (it alone knows the rule in force).
Exit status 0 when all is well, 1 when anything needs a technician.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from firmware import __version__, config, keys
from firmware.clock import ClockSync
from firmware.errors import QrgateError, StorageError
from firmware.revocation import store as revocation
from firmware.store.buffer import inspect
from firmware.technician import sysinfo
from firmware.trust import TrustStore
from firmware import health

STALE_S = 20.0  # the daemon rewrites its status every 5 s


def _daemon(runtime_dir: Path, now: float) -> dict[str, Any]:
    try:
        report = json.loads((Path(runtime_dir) / health.FILE).read_text())
    except (OSError, ValueError):
        return {"running": False, "why": f"no status from the daemon in {runtime_dir}"}
    age = now - report.get("written_at", 0)
    if age > STALE_S:
        return {"running": False, "why": f"the daemon's last status is {age:.0f} s old", "last": report}
    return {"running": True, **report}


def collect(cfg: config.Config, root: Path = Path("/"), now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    state = Path(cfg.device.state_dir)
    problems: list[str] = []
    daemon = _daemon(cfg.device.runtime_dir, now)
    if not daemon["running"]:
        problems.append(f"daemon not running: {daemon['why']}")
    for name, message in (daemon.get("faults") or {}).items():
        problems.append(f"fault {name}: {message}")
    try:
        store = inspect(state / "visits.db")
        store["oldest_queued_age_s"] = round(now - store.pop("oldest_ts")) if store["oldest_ts"] else None
        if store["integrity"] != "ok":
            problems.append(f"store integrity: {store['integrity']}")
    except StorageError as exc:
        store = {"error": str(exc)}
        problems.append(str(exc))
    trust: dict[str, object]
    try:
        current = TrustStore(state, keys.load_root_public(cfg.trust.root_key)).current()
    except QrgateError as exc:
        current, trust = None, {"error": str(exc)}
    else:
        trust = {"seq": current.seq if current else None,
                 "not_after": current.not_after if current else None,
                 "expired": current.expired(now) if current else None}
    if current is None or current.expired(now):
        problems.append(str(trust.get("error") or "") or ("no trust list installed" if current is None
                                               else f"trust list seq {current.seq} expired"))
    try:
        lists = revocation.describe(state / revocation.FOLDER, keys.load_root_public(cfg.trust.root_key), now)
    except QrgateError as exc:
        lists = {"error": str(exc)}
    clock = ClockSync(require=cfg.clock.require_sync, root=Path(root)).synchronised()
    if not clock and cfg.clock.require_sync:
        problems.append("clock not synchronised")
    try:
        usage = shutil.disk_usage(state)
        disk: dict[str, object] = {"free_bytes": usage.free, "total_bytes": usage.total}
        if usage.free < cfg.device.min_free_mb * 2**20:
            problems.append(f"little space left on the card: {usage.free // 2**20} MiB")
    except OSError as exc:
        disk = {"error": exc.strerror}
        problems.append(f"cannot read free space of {state}: {exc.strerror}")
    throttled = sysinfo.throttling(root)
    if throttled and any(flag.endswith("now") for flag in throttled["flags"]):
        problems.append("board throttled: " + ", ".join(throttled["flags"]))
    return {
        "version": __version__,
        "venue": cfg.device.venue, "device": cfg.device.id,
        "daemon": daemon,
        "store": store,
        "trust": trust,
        "revocation": {**lists, "required": cfg.dcc.revocation},
        "clock_sync": clock,
        "clock_required": cfg.clock.require_sync,
        "disk": disk,
        "cpu": {"temperature_c": sysinfo.cpu_temperature_c(root), "throttling": throttled},
        "problems": problems,
        "ok": not problems,
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "never"


def _passback(d: dict[str, Any]) -> str:
    """Which memory answers a token shown again at another door: the venue's, or only this door's, and why."""
    p = d.get("passback")
    if not d["running"] or not p:
        return "-"
    if p["mode"] == "venue":
        return (f"shared with the venue's doors: {p['peer_hashes']} tokens from peers held, {p['shared']} shared, "
                f"{p['replayed_elsewhere']} replayed elsewhere, {p['bad']} bad messages")
    return f"per door only ({p['why']})"


def _cards(d: dict[str, Any]) -> str:
    """Today's printed-card visits, and the cards seen more often than the venue's alert (docs/cards.md)."""
    c = d.get("cards_today")
    if not d["running"] or not c:
        return "-"
    line = f"{c['visits']} visits by {c['cards']} cards, at most {c['most_by_one_card']} by one card"
    return line + (f"; {c['over_alert']} cards OVER {c['alert']} visits (copied?)" if c["over_alert"] else "")


def _revocation(r: dict[str, Any]) -> str:
    """The list in force (seq, entries, age) and the next one while its bodies come."""
    if "error" in r:
        return str(r["error"])
    listed = r["in_force"]
    if listed is None:
        line = "none" + ("" if r["required"] else " (not required: dcc.revocation = false)")
    elif "error" in listed:
        line = listed["error"]
    else:
        line = f"seq {listed['seq']}, {listed['entries']:,} entries, issued {_age(listed['age_s'])} ago"
    coming = r["next"]
    if coming is not None and "error" not in coming:
        line += f"; seq {coming['seq']} coming, {coming['bodies_missing']} of {coming['buckets']} bodies to fetch"
    return line


def render(report: dict[str, Any], now: float | None = None) -> str:
    """A screenful: one fact a line, the problems last."""
    now = time.time() if now is None else now
    d, s, t, cpu = report["daemon"], report["store"], report["trust"], report["cpu"]
    cam = d.get("camera") or {}
    broker = d.get("broker")
    rows = [
        ("qrgate", f"{report['version']}  venue {report['venue']}  device {report['device']}"),
        ("daemon", f"running, up {_age(d.get('uptime_s'))}, pid {d.get('pid')}" if d["running"]
         else f"NOT RUNNING ({d['why']})"),
        ("camera", "-" if not d["running"] else
         f"{'LOST' if cam.get('lost') else 'ok'}, {d.get('fps')} fps, decode {d.get('decode_ms') or '-'} ms, "
         f"{cam.get('dropped', 0)} dropped, reopened {cam.get('reopened', 0)}x"),
        ("decode workers", "-" if not d["running"] or not d.get("workers") else "{recovered} frames read, {late} too "
         "late, {superseded} displaced, replaced {workers_replaced}x".format(**d["workers"])),
        ("queue", s["error"] if "error" in s else
         f"{s['queue_depth']} waiting, oldest {_age(s['oldest_queued_age_s'])}, integrity {s['integrity']}"),
        ("last delivery", _when(d.get("last_delivery"))),
        ("broker", "disabled" if d["running"] and broker is None else "-" if not broker else
         f"{'connected' if broker['connected'] else 'DISCONNECTED'}, {broker['reconnects']} reconnects"),
        ("passback", _passback(d)),
        ("cards today", _cards(d)),
        ("dcc rules", "-" if not d["running"] else ", ".join(
            f"{rule} failed {n}x" for rule, n in (d.get("rules_failed") or {}).items()) or "none failed"),
        ("clock", "synchronised" if report["clock_sync"] else "NOT synchronised"
         + ("" if report["clock_required"] else " (not required: clock.require_sync = false)")),
        ("trust list", t["error"] if "error" in t else "none installed" if t["seq"] is None else
         f"seq {t['seq']}, {'EXPIRED' if t['expired'] else 'valid'} until {_when(t['not_after'])}"),
        ("revocation list", _revocation(report["revocation"])),
        ("free space", report["disk"].get("error") or
         f"{report['disk']['free_bytes'] / 2**30:.1f} GiB of {report['disk']['total_bytes'] / 2**30:.1f} GiB"),
        ("cpu", f"{cpu['temperature_c'] if cpu['temperature_c'] is not None else '?'} °C, throttling: "
         + ("unknown" if cpu["throttling"] is None else ", ".join(cpu["throttling"]["flags"]) or "none")),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [""] + ([f"!! {p}" for p in report["problems"]] or ["all well"])
    return "\n".join(lines) + "\n"


def cmd_status(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    report = collect(cfg, args.sys_root)
    print(json.dumps(report) if args.json else render(report), end="\n" if args.json else "")
    return 0 if report["ok"] else 1
