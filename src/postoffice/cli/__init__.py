"""The `postoffice` command: one entry point, one sub-command per task.

Every command takes `--config` / `--data-dir`; problems are reported as one
line naming what is wrong (exit 1), never as a traceback. Sub-commands are
imported only when used, so that `postoffice user add` does not pay for the
server, DKIM and DNS libraries it never touches.
"""

from __future__ import annotations

import importlib
import sys

import click

from postoffice.cli.common import CliError

# name -> "module:attribute" of the click command; listed in `postoffice --help` order
COMMANDS = {
    "serve": "serve:serve",
    "check-config": "serve:check_config",
    "domain": "directory:domain",
    "user": "directory:user",
    "alias": "directory:alias",
    "dkim": "dkim:dkim",
    "dns-records": "dnsrecords:dns_records",
    "dns-check": "dnsrecords:dns_check",
    "queue": "queue:queue",
    "trace": "trace:trace",
    "demo": "demo:demo",
    "account": "account:account",
    "send": "send:send",
    "fetch": "fetch:fetch_command",
    "inbox": "read:inbox",
    "read": "read:read",
    "save": "read:save",
    "mark": "read:mark",
    "move": "read:move",
    "folders": "read:folders",
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(f"postoffice.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="postoffice")
def cli() -> None:
    """postoffice — a complete mail system: SMTP, queue, relay, mailboxes, POP3, user agent."""


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
    except BrokenPipeError:
        sys.exit(1)  # `postoffice dns-records x | head`: the reader left, nothing to report
    except KeyboardInterrupt:
        sys.exit(130)
