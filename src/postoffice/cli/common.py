"""What every sub-command shares: the --config/--data-dir options and error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from postoffice import config as configuration
from postoffice.config import Config, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def config_options(func: F) -> F:
    """Add --config and --data-dir to a command."""
    func = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Data directory (default: $POSTOFFICE_HOME or ./postoffice-data).",
    )(func)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Config file (default: postoffice.toml in the data dir).",
    )(func)


def load_config(config_path: Path | None, data_dir: Path | None, *, create: bool = False) -> Config:
    try:
        return configuration.load_for_cli(config_path, data_dir, create=create)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def user_errors(*kinds: type[Exception]) -> Callable[[F], F]:
    """Turn the given exception types into one-line CLI errors."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except kinds as exc:
                raise CliError(str(exc)) from None

        return inner  # type: ignore[return-value]

    return wrap
