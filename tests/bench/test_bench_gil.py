"""`qrgate bench gil` run small: every call of the decoder measured, and the controls judged as they are known.

What a library does with the GIL is the benchmark's to report; what is held
here is its method: calls known to hold the GIL (pure Python, and sorting in
C) must come out holding it, and calls known to release it (time.sleep, and
hashlib on a large buffer) releasing it, however busy the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from lab import render


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", "bench", "gil", *args], capture_output=True, text=True,
                          timeout=600)


def test_bench_gil_measures_every_decoder_call_and_tells_the_controls_apart():
    out = run("--calls", "6", "--repeats", "1")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["bench"] == "gil" and r["frame_size"] == [640, 480] and r["opencv_threads_measured"] == 1
    rows = {row["call"].split(" (")[0]: row for row in r["calls"]}
    for name in ("zxingcpp.read_barcodes(return_errors=True)", "zxingcpp.read_barcodes()",
                 "zxingcpp.read_barcodes(binarizer=GlobalHistogram)", "ZbarDecoder().decode", "cv2.blur 3x3",
                 "cv2.resize 2x INTER_CUBIC", "cv2.GaussianBlur sigma 2", "cv2.addWeighted"):
        assert name in rows, name
    for row in r["calls"]:
        assert row["calls"] == 6 and row["ms_per_call"] > 0 and row["speedup_2_threads"] > 0
        assert row["counter_fraction"] > 0 and isinstance(row["releases_gil"], bool)
        assert row["releases_gil"] == (row["gil_wait_ms"] < r["releases_gil_below_wait_ms"])
    known = {row["call"]: (row["known"], row["releases_gil"]) for row in r["calls"] if "known" in row}
    assert known == {
        "control: pure Python": ("holds", False),
        "control: sorted() of 50,000 ints (C, holding the GIL)": ("holds", False),
        "control: time.sleep(1 ms)": ("releases", True),
        "control: hashlib.sha256 of 1 MiB (C, releasing it)": ("releases", True),
    }
    assert r["controls_agree"] is True
    holding = [row["gil_wait_ms"] for row in r["calls"] if row.get("known") == "holds"]
    assert min(holding) >= r["switch_interval_ms"] / 2  # a holder makes a waking thread wait out the interval


def test_bench_gil_reads_a_given_image_and_refuses_a_missing_one(tmp_path):
    image = tmp_path / "frame.png"
    render.write_png(image, render.scene(render.phone_screen("KP1:given"), np.random.default_rng(0), 800, 600))
    out = run("--calls", "2", "--repeats", "1", "--image", str(image))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["frame"] == str(image)
    missing = run("--image", str(tmp_path / "nope.png"))
    assert missing.returncode != 0 and "cannot read image" in missing.stderr
