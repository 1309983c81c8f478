"""bench/gpu.py --dry: the GPU benchmark's code path at tiny sizes on CPU, and its result files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_peak_table_picks_the_specific_variant_first():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert gpu.peak_tflops("NVIDIA H200", None) == (989.0, "published dense bf16 peak of H200")
    assert gpu.peak_tflops("NVIDIA H100 PCIe", None)[0] == 756
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3", None)[0] == 989
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB", None)[0] == 312
    assert gpu.peak_tflops("NVIDIA H200", 500.0) == (500.0, "--peak-tflops")
    assert gpu.peak_tflops("Some GPU", None)[0] is None


@pytest.mark.slow
def test_dry_run_writes_its_results(tmp_path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--dry", "--out", str(out),
                        "--work", str(tmp_path / "work")], capture_output=True, text=True, env=env,
                       timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rec = json.loads((out / "gpu.json").read_text())
    assert rec["dry"] is True and rec["device_name"] == "CPU" and rec["amp"] == "none"
    rows = {(r["preset"], r["channels_last"], r["compile"]): r for r in rec["train"]}
    assert len(rows) == 8   # 2 presets x channels-last on/off x compile on/off
    assert all(r["samples_per_s"] > 0 and r["step_s"] > 0 for r in rows.values())
    assert all(r["compile_s"] is not None for k, r in rows.items() if k[2])
    # a trained backbone costs more FLOPs per sample than a frozen one (no backward through it)
    assert rec["flops_per_sample"]["paper"] > rec["flops_per_sample"]["official"] > 0
    assert rec["largest_batch"]["largest"]["batch"] == rec["batch"] == 2
    ld = rec["loader"]
    assert ld["workers"] >= 1 and ld["samples_per_s"] > 0 and ld["cpu_ms_per_sample"] > 0
    assert set(rec["loader_over_training"]) == {"paper", "official"}
    dd = rec["loader_device_decode"]   # on the CPU: libjpeg-turbo in the training process
    assert dd["decode"] == "device" and dd["decoder"] == "libjpeg-turbo" and dd["samples_per_s"] > 0
    assert set(rec["device_decode_over_training"]) == {"paper", "official"}
    (run,) = rec["runs"]
    assert "error" not in run, run
    assert [e["epoch"] for e in run["epochs"]] == [1, 2]
    assert all(0 <= e["data_wait_fraction"] <= 1 for e in run["epochs"])
    assert run["amp"] == "none" and run["eval"]["videos"] == 8 and run["eval"]["videos_per_s"] > 0
    md = (out / "gpu.md").read_text()
    assert "Dry run" in md and "say nothing about a GPU" in md
    assert md.count("| paper |") == 4 and md.count("| official |") == 4
    assert "data wait" in md and "`--gpus 2`: not run" in md
    assert "with `--decode device` / fastest `paper` training rate" in md


def test_the_package_does_not_import_the_benchmark():
    import re
    pattern = re.compile(r"^\s*(from|import)\s+(bench|gpu)\b", re.M)
    files = [REPO / "cli.py"] + [f for d in ("trainer", "model", "pipeline") for f in (REPO / d).glob("*.py")]
    assert len(files) > 20 and not [f for f in files if pattern.search(f.read_text())]
