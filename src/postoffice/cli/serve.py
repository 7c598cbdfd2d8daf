"""`postoffice serve` and `postoffice check-config`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from postoffice.cli.common import CliError, config_options, load_config
from postoffice.datadir import StartupError
from postoffice.logs import EventLog

if TYPE_CHECKING:
    from postoffice.workers import Prebound, ReceiverSide


Runner = Callable[[Coroutine[Any, Any, int]], int]


def loop_runner() -> Runner:
    """`asyncio.run`, or uvloop's when uvloop is installed (the `uvloop` extra).

    uvloop does the loop's own work (polling, socket calls, timers, transports) in C:
    docs/performance.md has what it buys. Called before the receivers fork, so that
    they share the pages of its import with the main process.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


@click.command()
@config_options
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Override [log] format.")
def serve(config_path: Path | None, data_dir: Path | None, log_format: str | None) -> None:
    """Start the mail server (creates the data dir with a default config on first run)."""
    from postoffice import diskio, heap

    heap.limit_arenas()  # before any thread: heap.py says why
    heap.fix_thresholds()
    diskio.shorten_gil_turns()  # diskio.py says why
    config = load_config(config_path, data_dir, create=True)
    log = EventLog(log_format or config.log.format, config.log.level)
    from postoffice.app import prepare_data_dir
    from postoffice.app import serve as run_server  # the whole server: only when serving
    from postoffice.workers import prebind_and_fork

    run_loop = loop_runner()

    def receiver(prebound: Prebound, side: ReceiverSide) -> int:
        try:
            return run_loop(run_server(config, log, False, prebound=prebound, receiver=side))
        except StartupError as exc:
            click.echo(f"error: {exc}", err=True)
            return 1
        finally:
            log.flush()  # the last round's lines (logs.py)

    try:
        if config.workers > 1:
            prepare_data_dir(config)
        prebound = prebind_and_fork(config, receiver)
    except StartupError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot listen for SMTP: {exc.strerror or exc}") from None
    try:
        status = run_loop(run_server(config, log, prebound=prebound))
    except StartupError as exc:
        raise CliError(str(exc)) from None
    finally:
        log.flush()  # the last round's lines (logs.py)
    sys.exit(status)


@click.command("check-config")
@config_options
def check_config(config_path: Path | None, data_dir: Path | None) -> None:
    """Validate the configuration and say which file was checked."""
    config = load_config(config_path, data_dir)
    click.echo(f"{config.source}: ok")
