import subprocess
import sys
from pathlib import Path


def _crm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crmlib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_bad_params_exit_2_without_traceback(tmp_path: Path):
    (tmp_path / "p.yaml").write_text("run: {timezone: Nowhere}\nsources: [{name: s, kind: orders, path: x.csv}]\n")
    res = _crm("run", "--params", str(tmp_path / "p.yaml"), cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "sources[0].path: file not found" in res.stderr and "run.timezone" in res.stderr


def test_validate_ok(tiny_params: Path):
    res = _crm("validate", "--params", str(tiny_params), cwd=tiny_params.parent)
    assert res.returncode == 0 and "ok" in res.stdout


def test_unknown_stage_exit_2(tiny_params: Path):
    res = _crm("run", "--params", str(tiny_params), "--only", "segmentaton", cwd=tiny_params.parent)
    assert res.returncode == 2 and "unknown stage" in res.stderr and "Traceback" not in res.stderr
