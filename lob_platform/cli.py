"""The ``lob`` command: the main job, the synthetic market, SQL on the warehouse, the Dagster UI.

    lob run        generate the synthetic market if data/ has none, ingest every instrument-day,
                   refresh the DuckDB catalogue and print a summary
    lob generate   write the synthetic market into data/
    lob sql "..."  run SQL on warehouse/lob.duckdb
    lob dev        start the Dagster UI on this project's own DAGSTER_HOME
    lob stream run     the streaming path for one instrument-day: replay into Redis, serve a
                       model, sink to parquet, evaluate (replay | serve | sink: one part each)
    lob deploy check PROFILE   does the profile's database (and broker) answer?
    lob deploy worker          a Celery worker of the celery profile
    lob deploy render          the Kubernetes Jobs of the training steps (k8s profile), as YAML

The deployment profile (local, postgres, celery, k8s) is LOB_PROFILE's: README.md, "Running at scale".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lob_platform.core.settings import data_root, warehouse_root


def ensure_dagster_home(profile=None) -> Path:
    """``$DAGSTER_HOME``, else the profile's own folder (``.dagster_home`` for local), holding the
    profile's ``dagster.yaml`` where it has none, with the pools' limits set on its instance."""
    from lob_platform.deploy.profiles import active_profile, prepare_home

    home = prepare_home(profile or active_profile())
    _apply_pools(home)
    return home


def _apply_pools(home: Path) -> dict[str, int]:
    """Make ``home`` this process's DAGSTER_HOME and give its instance's pools their limits."""
    import dagster as dg

    from lob_platform.deploy.pools import apply_pools

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        return apply_pools(instance)


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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _redis():
    from lob_platform.streaming.redis_server import connect

    return connect()


def stream_replay(args: argparse.Namespace) -> int:
    from lob_platform.lineage import Warehouse
    from lob_platform.sources.registry import venue_named
    from lob_platform.streaming.producer import replay

    venue = venue_named(args.venue)
    path = Warehouse(warehouse_root()).path(venue.kind.validated, venue.name, args.date, args.instrument)
    if not path.exists():
        from lob_platform.errors import ConfigError

        raise ConfigError(f"{venue.name}/{venue.kind.validated} {args.date}|{args.instrument} is not materialized: "
                          "run `lob run` (or materialize it in the UI) first.")
    import polars as pl

    done = replay(_redis(), venue.name, args.instrument, args.date, pl.read_parquet(path), speed=args.speed,
                  after=args.after, log=_log)
    print(f"{done.stream}: {done.events:,} events written ({done.skipped:,} already there) in {done.seconds:.1f} s")
    return 0


def _choice(args: argparse.Namespace):
    from lob_platform.streaming.serving import ModelChoice

    return ModelChoice(args.family, args.label, args.model_date, args.version)


def stream_serve(args: argparse.Namespace) -> int:
    from lob_platform.core.columns import book_levels
    from lob_platform.lineage import Warehouse
    from lob_platform.sources.registry import venue_named
    from lob_platform.streaming.consumer import Consumer, ConsumerConfig
    from lob_platform.streaming.serving import model_threads

    import polars as pl

    model_threads()
    venue = venue_named(args.venue)
    warehouse = Warehouse(warehouse_root())

    def levels(instrument: str) -> int:
        """Book levels of the instrument's validated days (as the producer writes them)."""
        days = sorted(warehouse.root.glob(f"{venue.kind.validated}/venue={venue.name}/instrument={instrument}/date=*/*.parquet"))
        return book_levels(list(pl.read_parquet_schema(days[-1]))) if days else 0

    config = ConsumerConfig(venue.name, _choice(args), **({"name": args.name} if args.name else {}), batch=args.batch)
    consumer = Consumer(_redis(), config, warehouse.root, venue.tick_for, levels, _log)
    _log(f"{config.name}: serving {venue.name} with {config.model.family} ({config.model.label}), reads of up to {config.batch}")
    consumer.run()
    return 0


def stream_sink(args: argparse.Namespace) -> int:
    from lob_platform.streaming.sink import Sink, SinkConfig

    config = SinkConfig(args.venue, batch_rows=args.batch_rows, max_age_s=args.max_age,
                        **({"name": args.name} if args.name else {}))
    Sink(_redis(), config, warehouse_root(), _log).run()
    return 0


def stream_run(args: argparse.Namespace) -> int:
    from lob_platform.streaming.pipeline import RunOptions, run_pipeline

    os.environ.setdefault("LOB_MODEL_SIZE", "tiny")  # inputs made here train the small configurations, as `lob run`
    return run_pipeline(RunOptions(args.venue, args.instrument, args.date, _choice(args), args.speed, args.batch,
                                   args.consumers, args.resume), _log)


def deploy_check(args: argparse.Namespace) -> int:
    from lob_platform.deploy.checks import check_profile
    from lob_platform.deploy.profiles import profile_named, prepare_home

    profile = profile_named(args.profile)
    home = prepare_home(profile)
    for line in check_profile(profile, home):
        print(line)
    if profile.executor != "k8s":  # on a cluster the instance is the Helm chart's; pools: deploy/k8s/README.md
        print("pools: " + ", ".join(f"{pool} {limit}" for pool, limit in _apply_pools(home).items()))
    return 0


def deploy_worker(args: argparse.Namespace) -> int:
    from lob_platform.deploy.celery import worker_command
    from lob_platform.deploy.profiles import profile_named

    ensure_dagster_home(profile_named("celery"))
    os.environ["LOB_PROFILE"] = "celery"
    command = worker_command(args.name or f"worker-{os.getpid()}", args.processes)
    os.execv(command[0], command)


def deploy_render(args: argparse.Namespace) -> int:
    import yaml

    from lob_platform.defs import build_definitions
    from lob_platform.deploy.k8s import render_training_jobs
    from lob_platform.sources.registry import load_venues

    print(yaml.safe_dump_all(render_training_jobs(build_definitions(load_venues())).values(), sort_keys=False), end="")
    return 0


def _deploy_commands(commands) -> None:
    deploy = commands.add_parser("deploy", help="deployment profiles").add_subparsers(dest="part", required=True)
    check = deploy.add_parser("check", help="load a profile and check that its database and broker answer")
    check.add_argument("profile", help="local, postgres, celery or k8s")
    check.set_defaults(func=deploy_check)
    worker = deploy.add_parser("worker", help="a Celery worker of the celery profile (broker: LOB_CELERY_BROKER)")
    worker.add_argument("--name", default=None, help="worker name (default: worker-PID); the host is added")
    worker.add_argument("--processes", type=int, default=1, help="steps this worker runs at once")
    worker.set_defaults(func=deploy_worker)
    deploy.add_parser("render", help="the Kubernetes Job of every training step under the k8s profile, as YAML "
                      "(what the k8s job executor would submit)").set_defaults(func=deploy_render)


def _stream_commands(commands) -> None:
    stream = commands.add_parser("stream", help="the Redis streaming path").add_subparsers(dest="part", required=True)

    def model_options(parser):
        parser.add_argument("--family", default="lightgbm", help="model family (lightgbm, lstm, ...)")
        parser.add_argument("--label", default="next_mid_up")
        parser.add_argument("--version", default=None, help="serve only this model version (default: the store's, followed)")
        parser.add_argument("--model-date", default=None, help="use the model of this date (default: the events' date)")
        parser.add_argument("--batch", type=int, default=512, help="entries per read and inference batch")

    replay_ = stream.add_parser("replay", help="replay a validated day into its events stream")
    for parser in (replay_, run_ := stream.add_parser("run", help="the whole streaming path for one instrument-day")):
        parser.add_argument("--venue", default="lobster")
        parser.add_argument("--instrument", required=True)
        parser.add_argument("--date", required=True)
        parser.add_argument("--speed", type=float, default=None, help="pace by the events' times / SPEED (default: full speed)")
    replay_.add_argument("--after", default=None, help="start after this entry id (default: after the stream's last)")
    replay_.set_defaults(func=stream_replay)
    model_options(run_)
    run_.add_argument("--consumers", type=int, default=1)
    run_.add_argument("--resume", action="store_true", help="keep an earlier run's streams and files and continue")
    run_.set_defaults(func=stream_run)
    serve = stream.add_parser("serve", help="an inference consumer (several share the instruments)")
    serve.add_argument("--venue", default="lobster")
    serve.add_argument("--name", default=None, help="consumer name (default: host-pid); a restart under the same name resumes at once")
    model_options(serve)
    serve.set_defaults(func=stream_serve)
    sink = stream.add_parser("sink", help="predictions to parquet under warehouse/stream_predictions")
    sink.add_argument("--venue", default="lobster")
    sink.add_argument("--batch-rows", type=int, default=10_000)
    sink.add_argument("--max-age", type=float, default=2.0, help="seconds a buffered prediction waits at most")
    sink.add_argument("--name", default=None)
    sink.set_defaults(func=stream_sink)


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
    _stream_commands(commands)
    _deploy_commands(commands)
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
