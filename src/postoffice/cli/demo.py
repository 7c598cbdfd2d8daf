"""`postoffice demo`: watch one message travel from alice@a.test to bob@b.test on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import click

from postoffice.cli.common import CliError
from postoffice.client.submit import SubmitError
from postoffice.demo import run_demo


@click.command()
@click.option("--port25", is_flag=True, help="Use the real ports 25 and 587 (needs root).")
@click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the servers' data dirs here instead of a temporary directory.",
)
def demo(port25: bool, keep: Path | None) -> None:
    """Run the whole journey for real on loopback and narrate each step."""
    if port25 and os.geteuid() != 0:
        raise CliError("--port25 needs root (ports below 1024); run without it for high ports")
    try:
        run_demo(port25=port25, keep=keep)
    except (RuntimeError, OSError, SubmitError) as exc:
        raise CliError(f"demo failed: {exc}") from None
