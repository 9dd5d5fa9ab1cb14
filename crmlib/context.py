"""What a notebook cell needs to work on a run: the validated params and an Engine on the run directory.

A scheduled run (``crm run``) passes ``params_path`` and ``run_dir`` to every notebook through papermill.
An analyst opening a notebook in JupyterLab leaves ``run_dir`` empty: the notebook then works in the
params' *interactive* run directory, ``<output_dir>/interactive/<run name>``, which notebook 01 fills and
notebooks 02-04 read - so each notebook runs standalone with its defaults once 01 has run.

Each context has its own Engine with its own scratch database outside the run directory, so several
notebooks can be open at once on the same run directory: they share only the run's ``tables/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crmlib.engine import Engine
from crmlib.i18n import set_language
from crmlib.params import load_params

__all__ = ["RunContext", "open_run", "interactive_run_dir"]


@dataclass
class RunContext:
    """The validated params, the run directory and its engine, handed to each stage function."""

    params: dict
    run_dir: Path
    engine: Engine

    @property
    def tables_dir(self) -> Path:
        return self.engine.tables_dir

    def close(self) -> None:
        """Close the engine and remove its scratch directory (also done when the kernel exits)."""
        self.engine.close()

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<RunContext run={self.params['run']['name']!r} run_dir={str(self.run_dir)!r} "
                f"tables={self.engine.list_tables()}>")


def interactive_run_dir(params: dict) -> Path:
    """The run directory used when a notebook is opened without a ``run_dir``."""
    return Path(params["run"]["output_dir"]) / "interactive" / params["run"]["name"]


def open_run(params_path: str | Path, run_dir: str | Path | None = None) -> RunContext:
    """Load and validate ``params_path`` and open an Engine on ``run_dir``.

    Parameters
    ----------
    params_path : str or Path
        The params YAML file.
    run_dir : str or Path, optional
        The run directory made by ``crm run``. Empty or None: the interactive run directory.
    """
    params = load_params(params_path)
    set_language(params["run"]["language"])
    run_dir = Path(run_dir) if run_dir else interactive_run_dir(params)
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(params=params, run_dir=run_dir, engine=Engine(run_dir, settings=params["engine"]))
