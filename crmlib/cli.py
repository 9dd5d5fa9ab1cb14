"""The ``crm`` command: ``crm sample``, ``crm validate`` and ``crm run``.

Exit codes
----------
0
    Success: every stage ok, or ok with warnings (the warnings are in the manifest and on the run page).
1
    The run failed: a stage failed (the run is still published, marked failed, and the stage's whole
    error message is printed), or the system refused a write - disk full, output folder not writable
    (one message naming the path and the fix; nothing published).
2
    The params file or the command line is wrong, or ``crm validate`` found problems in the input files
    (every problem printed; nothing created).
3
    Another ``crm run`` is using the same output folder; this run was refused at once and touched nothing.
130, 143
    Stopped by SIGINT (Ctrl-C) or SIGTERM: the kernel was stopped and the temporary run folder and scratch
    files removed; nothing published.

No traceback is printed for any of these: input, params and operating-system problems are reported in
one or a few plain lines on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_LOCKED"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crm", description="CRM analytics pipeline (crmlib).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="write the synthetic multi-source sample dataset (with truth/)")
    s.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder (default data/sample)")
    s.add_argument("--customers", type=int, default=5000, help="number of people (default 5000)")
    s.add_argument("--seed", type=int, default=42, help="random seed (default 42)")

    v = sub.add_parser("validate", help="check a params file and open its input files, then exit")
    v.add_argument("--params", required=True, type=Path)

    r = sub.add_parser("run", help="run the pipeline notebooks and publish the HTML reports")
    r.add_argument("--params", required=True, type=Path, help="params YAML file")
    r.add_argument("--run-id", default=None,
                   help="run id, a plain name (default <run name>_<UTC time>Z-<random>)")
    r.add_argument("--only", nargs="+", default=None, metavar="STAGE",
                   help="run only these stages (ingest segmentation roi ab_tests)")
    r.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a live line per stage on stderr with its step, count and elapsed time (default: when "
                        "stderr is a terminal); stdout always gets one line per stage")
    return p


def _validate(params_path: Path) -> int:
    from crmlib import ingest
    from crmlib.params import load_params

    params = load_params(params_path)
    problems = ingest.check_sources(params) if hasattr(ingest, "check_sources") else []
    if problems:
        print(f"{len(problems)} problem(s) in the input files of {params_path}:", file=sys.stderr)
        for where, message in problems:
            text = str(message).replace("\n", "\n    ")
            print(f"  - {where}: {text}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{params_path}: ok ({len(params['sources'])} sources)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crm`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    from crmlib.params import ParamsError

    command = f"crm {args.command}"
    try:
        if args.command == "sample":
            from crmlib.sample import generate_sample

            summary = generate_sample(args.out, customers=args.customers, seed=args.seed)
            print(summary)
            return EXIT_OK
        if args.command == "validate":
            return _validate(args.params)
        from crmlib.runner import RunInterrupted, RunLocked, UsageError, run_pipeline

        try:
            result = run_pipeline(args.params, run_id=args.run_id, only=args.only,
                                  execution_timeout=args.timeout, show_progress=args.progress)
        except RunLocked as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return EXIT_LOCKED
        except RunInterrupted as exc:
            print(f"{command}: stopped by {exc.signal_name}; the unfinished run and its temporary files were "
                  "removed, nothing was published.", file=sys.stderr)
            return exc.exit_code
        except UsageError as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK if result.ok else EXIT_FAILED
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside a run (validate, sample, loading the params)
        print(f"{command}: stopped by SIGINT.", file=sys.stderr)
        return 130
    except OSError as exc:
        from crmlib.runner import os_error_message

        if _is_params_file(exc, args):
            print(f"{command}: cannot read the params file {exc.filename}: {exc.strerror}.\n"
                  "Fix: check the path, and that this user may read the file.", file=sys.stderr)
            return EXIT_USAGE
        print(f"{command}: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_USAGE if args.command == "validate" else EXIT_FAILED


def _is_params_file(exc: OSError, args: argparse.Namespace) -> bool:
    params = getattr(args, "params", None)
    return params is not None and exc.filename is not None and Path(exc.filename) == Path(params)


if __name__ == "__main__":
    sys.exit(main())
