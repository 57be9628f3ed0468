"""`qrgate bench start` run small: the real `qrgate run` spawned, READY heard on its notify socket, the figures sane.

No figure is held to a time (that is the benchmark's to measure); what is held
is that every start said READY, scanning, that the breakdown saw every step
app.run takes on its way there (a step app.py renamed would go missing), and
that READY came after the first frame was decoded.
"""

from __future__ import annotations

import json
import subprocess
import sys

from lab.bench.start_trace import APP_STEPS


def test_bench_start_hears_ready_from_every_start_and_says_where_the_time_went(tmp_path):
    out = subprocess.run([sys.executable, "-m", "firmware", "bench", "start", "--runs", "2", "--folder", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["bench"] == "start" and r["runs"] == 2 and r["command"][-3:] == ["run", "--config", "FILE"]
    assert r["ready_status"] == ["scanning"]  # every start said READY=1, and not with a fault
    for kind in ("first_s", "warm_s"):
        s = r[kind]
        assert len(s["runs"]) == 2 and 0 < s["min"] <= s["median"] <= s["max"] < 60
    assert len(r["stop_s"]["runs"]) == 4 and r["no_bytecode_s"] > 0
    for kind in ("first", "warm"):  # Linux's /proc: the daemon's CPU time until READY, its threads all counted
        cpu = r["cpu_to_ready"][kind]
        assert len(cpu["cpu_s"]["runs"]) == 2 and cpu["cpu_s"]["min"] > 0 and cpu["runnable_waiting_s"]["min"] >= 0
    assert all(r[lib] for lib in ("numpy", "opencv", "zxing_cpp", "cryptography", "paho_mqtt", "gpiozero"))

    b = r["breakdown"]
    assert b["interpreter_start_ms"] > 0
    traced = b["traced"]
    steps = {s["step"]: s for s in traced["steps"]}
    assert traced["missing"] == [] and {step for step, _ in APP_STEPS} <= set(steps)
    assert {"import firmware.app", "import numpy", "import cv2", "the first frame delivered"} <= set(steps)
    decoded = steps["the first frame decoded"]
    assert decoded["at_ms"] >= steps["the first frame delivered"]["at_ms"]
    assert traced["ready_ms"] >= decoded["at_ms"] + decoded["ms"]  # READY once the door has read a frame
    assert all(0 <= s["at_ms"] <= traced["ready_ms"] and s["ms"] >= 0 for s in traced["steps"]
               if s["step"] != "the housekeeping's first round (its own thread)")
    assert not any(s.startswith(("import lab.", "import custodian.")) for s in steps)  # the device's parser only
    imports = b["importtime"]
    assert imports["total_ms"] > 0 and {"numpy", "cv2"} <= set(imports["by_package_ms"])

    met, goals = r["goals_met"], r["goals"]
    assert met == {"cold_start_s": max(r["first_s"]["median"], r["warm_s"]["median"]) < goals["cold_start_s"],
                   "ready_scanning": True, "all": met["cold_start_s"]}


def test_bench_start_refuses_no_runs():
    out = subprocess.run([sys.executable, "-m", "firmware", "bench", "start", "--runs", "0"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "--runs" in out.stderr
