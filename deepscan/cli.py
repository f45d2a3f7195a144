"""The Typer application: global options, error handling, exit codes.

Commands live in ``deepscan.commands``, one module each; they parse
options, call library functions and print. Every error that is the user's
to fix is one line on stderr and a documented exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

import typer
import typer.main
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import CommandInfo

from deepscan import __version__, interrupts
from deepscan.errors import DeepscanError, ExitCode, OutputClosed, Terminated

EXIT_CODES_HELP = (
    "Exit codes: 0 every file scored (or no image found: a warning says so); "
    "2 usage error (bad option, input, model or output path); "
    "3 some files could not be scored (see their error rows); 4 a fake budget was exceeded "
    "(--fail-on-fake, --max-fake, --max-fake-fraction; wins over 3); 130 interrupted (Ctrl-C); "
    "143 terminated (SIGTERM); 141 stdout closed by its reader (| head)."
)


GLOBAL_FLAGS = ("-v", "--verbose")
GLOBAL_VALUED = ("--log-level",)


class PlainHelp:
    """Help that reads like a manual: FILE, N, TEXT for values, nothing for flags (not <bool>, <list[str]>)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]  # with the help and completion options
        for param in params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # its name says it
            elif param.metavar is None:
                param.metavar = _metavar(param)
        return params


# Each command: its module in deepscan.commands, its function, the line `deepscan --help` lists it with, and
# whether it ends with the exit codes. A command's module (and what it imports: numpy, Pillow, TensorFlow)
# is imported only when that command runs or shows its help, so `deepscan --help` and `-V` start at once.
COMMANDS = {
    "scan": ("scan", "scan_command", "Score images as real or fake: one row per file (per face with --faces).", True),
    "train": ("train", "train_command", "Train a real/fake model and choose its threshold.", False),
    "combine": ("combine", "combine_command", "Combine trained models into one face model of several views.", False),
    "evaluate": ("evaluate", "evaluate_command", "Measure a model on labelled folders, each source apart.", False),
    "info": ("info", "info_command", "Show a model's input, threshold, training recipe and device.", False),
    "inspect": ("inspect", "inspect_command", "Show what files' metadata says about their origin.", False),
    "report": ("report", "report_command", "Build an HTML report from a CSV or JSON Lines report.", False),
}


class DeepscanGroup(PlainHelp, TyperGroup):
    """Loads each command on first use; turns usage errors, deepscan errors and interrupts into one line and an
    exit code."""

    listing = False  # while the group's own help is written

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, name: str) -> TyperCommand | None:
        if name not in COMMANDS:
            return None
        if name not in self.commands:
            if self.listing:  # the group's help lists the commands: their line is enough
                return TyperCommand(name, short_help=COMMANDS[name][2])
            self.commands[name] = _load_command(name)
        return self.commands[name]

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        """The commands and global options as plain text (Typer's Rich help, kept for each command's own, takes
        as long to import as Typer and Rich themselves: `deepscan --help` should be instant)."""
        self.listing = True
        try:
            super(TyperGroup, self).format_help(ctx, formatter)  # Click's own, below Typer's Rich one
        finally:
            self.listing = False

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:
        extra["standalone_mode"] = False
        args = _hoisted(list(sys.argv[1:] if args is None else args), set(COMMANDS))
        try:
            with interrupts.raised():
                code = super().main(args, prog_name or "deepscan", **extra)
        except typer.TyperException as err:  # usage errors from option parsing
            _fail(err.format_message(), err.exit_code)
        except OutputClosed as err:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            sys.exit(err.exit_code)
        except DeepscanError as err:
            _fail(str(err), err.exit_code)
        except Terminated:
            sys.exit(ExitCode.TERMINATED)
        except (KeyboardInterrupt, typer.Abort):
            sys.exit(ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _hoisted(args: list[str], commands: set[str]) -> list[str]:
    """Move global options given after the command (``deepscan scan x -v``) in front of it, where Typer reads them.

    Nothing after ``--`` moves: there, ``-v`` is a path.
    """
    position = next((i for i, arg in enumerate(args) if arg in commands), None)
    if position is None:
        return args
    before, after, moved = args[: position + 1], [], []
    rest = iter(args[position + 1 :])
    for arg in rest:
        if arg == "--":
            after += [arg, *rest]
            break
        if arg in GLOBAL_FLAGS or arg.startswith(tuple(f"{name}=" for name in GLOBAL_VALUED)):
            moved.append(arg)
        elif arg in GLOBAL_VALUED:
            moved += [arg, next(rest, "")]
        else:
            after.append(arg)
    return moved + before + after


class DeepscanCommand(PlainHelp, TyperCommand):
    """A command with plain help."""


def _metavar(param: Any) -> str | None:
    descriptor = param.type_descriptor
    if getattr(param, "is_flag", False):
        return ""
    if descriptor.is_choice:
        return None  # Typer lists the choices
    if descriptor.is_path:
        return descriptor.path_type.upper()
    return {int: "N", float: "NUMBER"}.get(descriptor.annotation, "TEXT")


def _fail(message: str, code: int) -> None:
    if message:  # empty after "deepscan" alone, which has printed the help already
        Console(stderr=True, highlight=False).print(f"deepscan: error: {message}", markup=False, soft_wrap=True)
    sys.exit(code)


app = typer.Typer(
    cls=DeepscanGroup,
    help="Audit folders of images for deepfakes and AI-generated content.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deepscan {__version__}")
        raise typer.Exit()


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what happens (same as --log-level info).")
    ] = False,
    log_level: Annotated[LogLevel, typer.Option(help="Messages on stderr from this level up.")] = LogLevel.warning,
) -> None:
    """Audit folders of images for deepfakes and AI-generated content.

    -v and --log-level may also follow the command: deepscan scan ./photos -v
    """
    level = logging.INFO if verbose and log_level is LogLevel.warning else getattr(logging, log_level.value.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("deepscan: %(levelname)s: %(message)s"))
    logger = logging.getLogger("deepscan")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _load_command(name: str) -> TyperCommand:
    """The Click command Typer makes of a command's function, its module imported now."""
    module, function, short_help, exit_codes = COMMANDS[name]
    info = CommandInfo(
        name=name,
        cls=DeepscanCommand,
        callback=getattr(importlib.import_module(f"deepscan.commands.{module}"), function),
        short_help=short_help,
        epilog=EXIT_CODES_HELP if exit_codes else None,
    )
    return typer.main.get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode="markdown")


def main() -> None:
    """Console-script entry point."""
    app()
