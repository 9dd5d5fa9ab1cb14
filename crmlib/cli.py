"""The ``crm`` command: ``crm sample``, ``crm validate`` and ``crm run``.

Exit codes: 0 success; 1 a stage failed (the run is still published, marked failed); 2 the params
file or the command line is wrong (the problems are printed, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crm", description="CRM analytics pipeline (crmlib).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="write the synthetic multi-source sample dataset (with truth/)")
    s.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder (default data/sample)")
    s.add_argument("--customers", type=int, default=5000, help="number of people (default 5000)")
    s.add_argument("--seed", type=int, default=42, help="random seed (default 42)")

    v = sub.add_parser("validate", help="check a params file and exit")
    v.add_argument("--params", required=True, type=Path)

    r = sub.add_parser("run", help="run the pipeline notebooks and publish the HTML reports")
    r.add_argument("--params", required=True, type=Path, help="params YAML file")
    r.add_argument("--run-id", default=None, help="run id (default <run name>_<UTC timestamp>)")
    r.add_argument("--only", nargs="+", default=None, metavar="STAGE",
                   help="run only these stages (ingest segmentation roi ab_tests)")
    r.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crm`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    from crmlib.params import ParamsError, load_params

    try:
        if args.command == "sample":
            from crmlib.sample import generate_sample

            summary = generate_sample(args.out, customers=args.customers, seed=args.seed)
            print(summary)
            return 0
        if args.command == "validate":
            params = load_params(args.params)
            print(f"{args.params}: ok ({len(params['sources'])} sources)")
            return 0
        from crmlib.runner import run_pipeline

        result = run_pipeline(args.params, run_id=args.run_id, only=args.only,
                              execution_timeout=args.timeout)
        return 0 if result.ok else 1
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ValueError, FileExistsError) as exc:
        print(f"crm {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
