"""The ``crm`` command: exit codes and plain-words messages (never a traceback) for params, command-line and
operating-system problems."""

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crmlib import cli, report, runner


@pytest.fixture(autouse=True)
def scratch_root(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "scratch"
    monkeypatch.setenv("CRM_SCRATCH_DIR", str(root))
    return root


@pytest.fixture
def tiny_notebooks(tmp_path: Path, notebook_writer, monkeypatch) -> Path:
    """``crm run`` in this process executes two tiny notebooks instead of the real ones."""
    d = tmp_path / "nbs"
    notebook_writer(d / "01_ingest.ipynb", "print('ingest')")
    notebook_writer(d / "02_segmentation.ipynb", "print('segmentation')")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", d)
    return d


def _crm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crmlib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=os.environ)


def _reports(tiny_params: Path) -> Path:
    return tiny_params.parent.parent / "reports"


def test_bad_params_exit_2_without_traceback(tmp_path: Path):
    (tmp_path / "p.yaml").write_text("run: {timezone: Nowhere}\nsources: [{name: s, kind: orders, path: x.csv}]\n")
    res = _crm("run", "--params", str(tmp_path / "p.yaml"), cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "sources[0].path" in res.stderr and "run.timezone" in res.stderr


def test_validate_ok(tiny_params: Path):
    res = _crm("validate", "--params", str(tiny_params), cwd=tiny_params.parent)
    assert res.returncode == 0 and "ok" in res.stdout


def test_validate_prints_every_input_problem_and_exits_2(tiny_params: Path, monkeypatch, capsys):
    import crmlib.ingest

    problems = [("sources[0] shop (orders.csv)", "column 'amount' is missing; columns in the file: customer, ts\n"
                                                 "fix: map it, e.g. columns: {total: amount}"),
                ("sources[0] shop (orders.csv) row 2", "order_ts '2026-13-45' is not a date")]
    monkeypatch.setattr(crmlib.ingest, "check_sources", lambda params: problems, raising=False)
    assert cli.main(["validate", "--params", str(tiny_params)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("2 problem(s) in the input files")
    assert "fix: map it, e.g. columns: {total: amount}" in err and "2026-13-45" in err


def test_unknown_stage_exit_2_and_nothing_created(tiny_params: Path):
    res = _crm("run", "--params", str(tiny_params), "--only", "segmentaton", cwd=tiny_params.parent)
    assert res.returncode == 2 and "unknown stage" in res.stderr and "Traceback" not in res.stderr
    assert not _reports(tiny_params).exists()


def test_run_id_that_is_a_path_is_refused(tiny_params: Path):
    res = _crm("run", "--params", str(tiny_params), "--run-id", "../../../x", cwd=tiny_params.parent)
    assert res.returncode == 2 and "--run-id" in res.stderr and "Traceback" not in res.stderr
    assert not _reports(tiny_params).exists() and not (tiny_params.parent.parent.parent / "x").exists()


def test_unreadable_params_file_exit_2(tiny_params: Path, monkeypatch, capsys):
    # The tests run as root, for whom chmod does not block reading: the refusal is simulated.
    real = Path.read_bytes

    def refuse(self):
        if self == tiny_params:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: refuse(self).decode())
    assert cli.main(["run", "--params", str(tiny_params)]) == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and str(tiny_params) in err and "Traceback" not in err


def test_missing_output_folder_is_created(tiny_params: Path, tiny_notebooks: Path, capsys):
    assert not _reports(tiny_params).exists()
    assert cli.main(["run", "--params", str(tiny_params), "--run-id", "first"]) == 0
    assert (_reports(tiny_params) / "first" / "manifest.json").exists()


def test_output_folder_under_a_file_fails_with_a_plain_message(tiny_params: Path):
    """A real operating-system refusal (ENOTDIR): run.output_dir points below a regular file."""
    blocker = tiny_params.parent.parent / "reports"
    blocker.write_text("a file where the reports folder should be")
    res = _crm("run", "--params", str(tiny_params), cwd=tiny_params.parent)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and str(blocker) in res.stderr and "Fix:" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2


def test_read_only_output_folder_fails_with_a_plain_message(tiny_params: Path, tiny_notebooks: Path,
                                                           monkeypatch, capsys):
    """The tests run as root, for whom a read-only folder (chmod 555) is still writable, so the refusal is
    simulated: every os.open that would create a file under the output folder gets EROFS."""
    output_dir = _reports(tiny_params)
    output_dir.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(output_dir)) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code = cli.main(["run", "--params", str(tiny_params)])
    err = capsys.readouterr().err
    assert code == 1
    assert "read-only" in err and str(output_dir) in err and "Fix:" in err and "Traceback" not in err
    assert list(output_dir.iterdir()) == []


def test_disk_full_while_publishing_fails_cleanly(tiny_params: Path, tiny_notebooks: Path, scratch_root: Path,
                                                  monkeypatch, capsys):
    def disk_full(run_dir, manifest):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(run_dir) / "index.html"))

    monkeypatch.setattr(report, "write_run_index", disk_full)
    code = cli.main(["run", "--params", str(tiny_params), "--run-id", "full"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no space left on the device" in err and "index.html" in err and "Traceback" not in err
    output_dir = _reports(tiny_params)
    assert not (output_dir / "full").exists() and not list(output_dir.glob(".tmp-*"))
    assert not list(scratch_root.glob("crmlib-*"))


def test_second_run_on_a_busy_output_folder_exits_3(tiny_params: Path, tiny_notebooks: Path, capsys):
    output_dir = _reports(tiny_params)
    output_dir.mkdir()
    with open(output_dir / runner.LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(["run", "--params", str(tiny_params)]) == 3
    err = capsys.readouterr().err
    assert "another crm run" in err and str(output_dir) in err
    assert [p.name for p in output_dir.iterdir()] == [runner.LOCK_FILE]


def test_unreadable_source_file_exit_2_and_nothing_left(tiny_params: Path, tiny_notebooks: Path, monkeypatch,
                                                        capsys):
    # As root, chmod 000 does not block reading: the refusal is simulated for the one source file.
    import builtins

    source = tiny_params.parent.parent / "data" / "orders.csv"
    real_open = builtins.open

    def refuse(file, *args, **kwargs):
        if str(file) == str(source):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
    assert cli.main(["run", "--params", str(tiny_params), "--run-id", "unreadable"]) == 2
    err = capsys.readouterr().err
    assert "source 'shop'" in err and str(source) in err and "Permission denied" in err and "Traceback" not in err
    output_dir = _reports(tiny_params)
    assert not (output_dir / "unreadable").exists() and not list(output_dir.glob(".tmp-*"))
