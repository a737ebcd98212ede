"""The ``lob`` command: the main job, the synthetic market, SQL on the warehouse, the Dagster UI.

    lob run        generate the synthetic market if data/ has none, ingest every instrument-day,
                   refresh the DuckDB catalogue and print a summary
    lob generate   write the synthetic market into data/
    lob sql "..."  run SQL on warehouse/lob.duckdb
    lob dev        start the Dagster UI on this project's own DAGSTER_HOME
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lob_platform.core.settings import data_root, warehouse_root

DAGSTER_HOME = ".dagster_home"


def ensure_dagster_home() -> Path:
    """Use ``$DAGSTER_HOME`` or the project's own ``.dagster_home`` for run storage."""
    home = Path(os.environ.get("DAGSTER_HOME", DAGSTER_HOME)).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # run monitoring: under `dagster dev` the daemon fails runs whose worker process died
        # the gpu pool (model training) runs one step at a time on this machine
        config.write_text("telemetry:\n  enabled: false\nrun_monitoring:\n  enabled: true\n"
                          "concurrency:\n  pools:\n    default_limit: 1\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def generate(args: argparse.Namespace) -> int:
    from lob_platform.sources.synthetic import MarketConfig, generate_market

    config = MarketConfig.no_signal(seed=args.seed) if args.no_signal else MarketConfig(seed=args.seed)
    started = time.perf_counter()
    paths = generate_market(args.data_dir or data_root(), config)
    print(f"wrote {len(paths)} files under {args.data_dir or data_root()} in {time.perf_counter() - started:.1f}s")
    return 0


def run(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    os.environ.setdefault("LOB_MODEL_SIZE", "tiny")  # the main job trains the small configurations
    from lob_platform.main_job import run_main_job

    return run_main_job()


def sql(args: argparse.Namespace) -> int:
    from lob_platform.warehouse import query

    columns, rows = query(warehouse_root(), args.query)
    print("\t".join(columns))
    for row in rows:
        print("\t".join(str(value) for value in row))
    return 0


def dev(args: argparse.Namespace) -> int:
    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}")
    os.execvp("dagster", ["dagster", "dev", "-w", "workspace.yaml", *args.extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lob", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="the main job").set_defaults(func=run)
    gen = commands.add_parser("generate", help="write the synthetic market")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--no-signal", action="store_true", help="switch every planted structure off")
    gen.add_argument("--data-dir", type=Path, default=None)
    gen.set_defaults(func=generate)
    query = commands.add_parser("sql", help="SQL on the warehouse catalogue")
    query.add_argument("query")
    query.set_defaults(func=sql)
    commands.add_parser("dev", help="the Dagster UI (other options go to `dagster dev`)").set_defaults(func=dev)
    args, args.extra = parser.parse_known_args(argv)
    if args.extra and args.command != "dev":
        parser.error(f"unrecognized arguments: {' '.join(args.extra)}")
    try:
        return args.func(args)
    except Exception as error:  # a LobDataError already says what and where
        from lob_platform.errors import LobDataError

        if isinstance(error, LobDataError):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
