"""The `storepulse` command line (DESIGN §2)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from storepulse.settings import Paths

SCALES = ("tiny", "small", "medium", "large")


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storepulse",
        description="Marketing analytics and predictions for cross-border DTC stores.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sample = sub.add_parser(
        "sample-data", help="generate sample landing files and their ground truth"
    )
    sample.add_argument("--scale", choices=SCALES, default="tiny")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", type=Path, required=True, help="folder to write (landing layout)")
    sample.add_argument("--format", choices=("csv", "parquet"), default="csv")
    sample.add_argument("--no-dirt", action="store_true", help="no injected dirty rows")
    sample.add_argument("--end-date", type=_parse_date, default=date(2026, 10, 31))

    run = sub.add_parser("run", help="run the nightly job in-process against STOREPULSE_HOME")
    run.add_argument("--as-of", type=_parse_date, default=None, help="replay as of YYYY-MM-DD")
    run.add_argument(
        "--select",
        default=None,
        help="comma-separated asset keys to run (e.g. 'marts/kpi_daily'); default: everything",
    )
    run.add_argument(
        "--sample-data-if-empty",
        choices=SCALES,
        default=None,
        metavar="SCALE",
        help="generate sample data at SCALE first when the landing folder is empty",
    )
    run.add_argument("--seed", type=int, default=0, help="seed for --sample-data-if-empty")
    run.add_argument("--no-publish", action="store_true", help="skip the per-store publish runs")

    forget = sub.add_parser(
        "forget",
        help="file a privacy deletion request; the next run erases the customer everywhere",
    )
    forget.add_argument("--store", required=True, help="store id")
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="the customer's e-mail address")
    who.add_argument("--customer-id", help="the customer's id in the store")
    forget.add_argument(
        "--now", action="store_true", help="also erase right away (otherwise: at the next run)"
    )

    sub.add_parser("init-home", help="create STOREPULSE_HOME and install dagster.yaml there")

    size = sub.add_parser(
        "sample-size",
        help="customers per variant an A/B test needs to detect a lift (power analysis)",
    )
    baseline = size.add_mutually_exclusive_group(required=True)
    baseline.add_argument(
        "--baseline-rate", type=_share, help="conversion rate of the control, e.g. 0.03"
    )
    baseline.add_argument(
        "--baseline-mean", type=float, help="mean of a metric such as revenue per customer"
    )
    size.add_argument(
        "--baseline-sd", type=float, help="its standard deviation (with --baseline-mean)"
    )
    size.add_argument(
        "--lift", type=float, required=True, help="relative lift to detect, e.g. 0.1 for +10%%"
    )
    size.add_argument("--power", type=_share, default=0.8, help="chance to detect it (0.8)")
    size.add_argument("--alpha", type=_share, default=0.05, help="significance, two-sided (0.05)")
    return parser


def _share(value: str) -> float:
    number = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a share between 0 and 1 (e.g. 0.05)")
    return number


def main(argv: list[str] | None = None) -> int:
    from storepulse.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before DuckDB, polars or LightGBM start their threads
    args = build_parser().parse_args(argv)
    if args.command == "sample-data":
        return cmd_sample_data(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "forget":
        return cmd_forget(args)
    if args.command == "sample-size":
        return cmd_sample_size(args)
    if args.command == "init-home":
        paths = init_home()
        import dagster as dg

        from pipelines.resources import set_pool_limits

        with dg.DagsterInstance.get() as instance:
            limits = set_pool_limits(instance)
        print(f"STOREPULSE_HOME={paths.home}\nDAGSTER_HOME={paths.dagster_home}")
        print("pool limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()))
        return 0
    raise AssertionError(args.command)  # argparse enforces the choices


def init_home() -> Paths:
    paths = Paths.from_env().ensure()
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    return paths


def cmd_sample_data(args) -> int:
    from storepulse.sample_data import generate

    summary = generate(
        args.out,
        scale=args.scale,
        seed=args.seed,
        end_date=args.end_date,
        fmt=args.format,
        dirt=not args.no_dirt,
        progress=sys.stderr.isatty(),
    )
    print(
        f"Wrote {args.scale} sample data (seed {args.seed}) to {args.out} in "
        f"{summary.seconds:.1f} s: {len(summary.store_ids)} stores "
        f"({', '.join(summary.store_ids)}), {summary.start_date} to {summary.end_date}"
    )
    for kind, rows in sorted(summary.rows_by_kind.items()):
        print(f"  {kind:<24} {rows:>12,} rows")
    print(f"Ground truth (never read by the pipeline): {Path(args.out) / '_truth'}")
    return 0


def cmd_sample_size(args) -> int:
    from models.experiments import sample_size_mean, sample_size_proportion

    try:
        if args.baseline_rate is not None:
            n = sample_size_proportion(args.baseline_rate, args.lift, args.alpha, args.power)
            what = (
                f"a {args.lift:+.0%} lift of a {args.baseline_rate:.2%} conversion rate (to "
                f"{args.baseline_rate * (1 + args.lift):.2%})"
            )
        else:
            if args.baseline_sd is None:
                print("sample-size: --baseline-mean needs --baseline-sd", file=sys.stderr)
                return 2
            n = sample_size_mean(
                args.baseline_mean, args.baseline_sd, args.lift, args.alpha, args.power
            )
            what = f"a {args.lift:+.0%} lift of a mean of {args.baseline_mean:,.2f}"
    except ValueError as exc:
        print(f"sample-size: {exc}", file=sys.stderr)
        return 2
    print(f"{n:,} customers per variant ({2 * n:,} for an A/B test)")
    print(
        f"to detect {what} with {args.power:.0%} power at {args.alpha:.0%} significance "
        "(two-sided); read the test once, when that many customers have been through it."
    )
    return 0


def cmd_forget(args) -> int:
    from storepulse.ingest import safe_store_id
    from storepulse.privacy import apply_privacy_requests, request_deletion
    from storepulse.warehouse import Warehouse

    paths = init_home()
    try:
        store_id = safe_store_id(args.store)
    except ValueError as exc:
        print(f"storepulse forget: {exc}", file=sys.stderr)
        return 2
    with Warehouse(paths.warehouse).writer() as con:
        request_id = request_deletion(
            con, store_id, email=args.email, customer_id=args.customer_id, source="cli"
        )
        print(f"Deletion request {request_id} recorded for store {store_id} (ops.privacy_log).")
        if args.now:
            summary = apply_privacy_requests(con)
            print(f"Erased now: {summary.total_rows_deleted} rows.")
        else:
            print("The customer is erased from every table at the start of the next run.")
    return 0


def landing_is_empty(landing: Path) -> bool:
    return not any(
        p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(landing).parts)
        for p in landing.rglob("*")
    )


def cmd_run(args) -> int:
    from storepulse.runner import run_nightly

    paths = init_home()
    if args.sample_data_if_empty and landing_is_empty(paths.landing):
        from storepulse.sample_data import generate

        print(
            f"Landing folder {paths.landing} is empty: generating {args.sample_data_if_empty} sample data"
        )
        generate(
            paths.landing,
            scale=args.sample_data_if_empty,
            seed=args.seed,
            progress=sys.stderr.isatty(),
        )
    select = [s.strip() for s in args.select.split(",")] if args.select else None
    result = run_nightly(as_of=args.as_of, select=select, publish=not args.no_publish)
    print(result.summary())
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
