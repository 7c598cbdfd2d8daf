"""The `postoffice` command: one entry point, one sub-command per task.

Every command takes `--config` / `--data-dir`; problems are reported as one
line naming what is wrong (exit 1), never as a traceback.
"""

from __future__ import annotations

import sys

import click

from postoffice.cli.common import CliError
from postoffice.cli.demo import demo
from postoffice.cli.directory import alias, domain, user
from postoffice.cli.queue import queue
from postoffice.cli.serve import check_config, serve
from postoffice.cli.trace import trace


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="postoffice")
def cli() -> None:
    """postoffice — a complete mail system: SMTP, queue, relay, mailboxes."""


for command in (serve, check_config, domain, user, alias, queue, trace, demo):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("postoffice: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CliError as exc:
        click.echo(f"postoffice: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
