"""The `imaginebot` console script: `run`, `imagine`, `migrate`, `worker`, `eval`.

Each subcommand loads the configuration once and hands it to its entry point. A bad setting ends
the program with one sentence and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import ConfigError, load_config

__all__ = ["main"]

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imaginebot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the Discord bot (foreground)")
    imagine = sub.add_parser("imagine", help="generate one grid locally, no Discord")
    imagine.add_argument("prompt", help='Midjourney-style prompt, e.g. "a red fox --ar 3:2 --seed 7"')
    imagine.add_argument("-o", "--output", type=Path, default=Path("grid.png"), help="grid file to write")
    imagine.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub.add_parser("migrate", help="apply database migrations and exit")
    worker = sub.add_parser("worker", help="run jobs for a bot on one GPU (needs IMAGINE_QUEUE_URL)")
    worker.add_argument("--device", help="the GPU to use, e.g. cuda:1 (default: IMAGINE_DEVICE)")
    worker.add_argument("--name", help="this worker's name in logs (default: host-pid-random)")
    worker.add_argument(
        "--models", help="comma-separated model ids it serves (default: IMAGINE_MODEL and aliases)"
    )
    evaluate = sub.add_parser("eval", help="measure models on the shapes prompts: FID, IS, prompt adherence")
    evaluate.add_argument(
        "--model", action="append", required=True, help="a model as IMAGINE_MODEL takes it, or `data`; repeat"
    )
    evaluate.add_argument("--prompts", type=Path, help="prompts file, one per line (default: shapes prompts)")
    evaluate.add_argument("--n", type=int, default=200, help="images per model and aspect (default 200)")
    evaluate.add_argument("--ar", action="append", help="aspect ratio like 3:2; repeat (default 1:1)")
    evaluate.add_argument("--out", type=Path, default=Path("report"), help="report folder (default report/)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the prompts and grids (default 0)")
    evaluate.add_argument("--inception-weights", type=Path, help="default: IMAGINE_INCEPTION_WEIGHTS")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"imaginebot: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if args.command == "migrate":
        from bot.store.migrate import main as migrate_main

        return migrate_main(config.database_url)
    if args.command == "imagine":
        from bot.imagine_cli import main as imagine_main

        return imagine_main(config, args.prompt, args.output, quiet=args.quiet)
    if args.command == "eval":
        from bot.eval_cli import main as eval_main

        return eval_main(config, args)
    _configure_logging(config.log_level)
    if args.command == "worker":
        from bot.worker_cli import main as worker_main

        return worker_main(config, device=args.device, name=args.name, models=args.models)
    from bot.app import main as run_main

    return run_main(config)


if __name__ == "__main__":
    sys.exit(main())
