"""Finding a Java runtime PySpark can use (stub; the install work replaces it)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = ["ensure_java", "JavaNotFound", "SUPPORTED_MAJORS"]

SUPPORTED_MAJORS = (17, 21)


class JavaNotFound(RuntimeError):
    """No Java 17 or 21 runtime was found."""


def java_major(home: Path) -> int | None:
    try:
        out = subprocess.run([str(home / "bin" / "java"), "-version"], capture_output=True, text=True,
                             timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)', out)
    return int(m.group(1)) if m else None


def candidates() -> list[Path]:
    found = []
    if os.environ.get("JAVA_HOME"):
        found.append(Path(os.environ["JAVA_HOME"]))
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        found += sorted(p for p in jvm.iterdir() if (p / "bin" / "java").exists())
    return found


def ensure_java() -> Path:
    """Set ``JAVA_HOME`` to a Java 17 or 21 runtime and return it."""
    for home in candidates():
        if java_major(home) in SUPPORTED_MAJORS:
            os.environ["JAVA_HOME"] = str(home)
            return home
    raise JavaNotFound("Spark needs a Java 17 or 21 runtime; none was found")
