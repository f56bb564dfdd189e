"""The `gradtui` command: the dashboard, `run` (headless), `presets`, `compare`.

Arguments and configurations are checked before any screen is drawn or torch
is imported; a bad one ends the command with one line naming it and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from engine.collector import import_quietly
from engine.config import ConfigError, RunConfig
from engine.devices import check_device
from engine.headless import RunFailed
from engine.presets import DEFAULT_PRESET, PRESETS, get_preset

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A bad flag, preset, key or value: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line instead of usage and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_config_arguments(parser: argparse.ArgumentParser, preset_default: str | None) -> None:
    parser.add_argument(
        "--preset",
        default=preset_default,
        metavar="NAME",
        help="start from this preset (see `gradtui presets`)",
    )
    parser.add_argument("--config", metavar="FILE", help="load a configuration saved as TOML")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one field of the configuration (repeatable)",
    )


def _parsers() -> dict[str, argparse.ArgumentParser]:
    dashboard = _Parser(
        prog="gradtui",
        description="Watch gradients vanish and explode, live.",
        epilog="Other commands: gradtui run | presets | compare A B",
    )
    _add_config_arguments(dashboard, None)
    dashboard.add_argument(
        "--fps",
        type=_positive_int("--fps"),
        default=10,
        help="most redraws per second (default 10)",
    )
    run = _Parser(prog="gradtui run", description="Train without a screen and export the records.")
    _add_config_arguments(run, None)
    run.add_argument("--epochs", type=_positive_int("--epochs"), help="override the epochs")
    run.add_argument("--out", metavar="FILE", help="write records to FILE (.jsonl or .csv)")
    presets = _Parser(prog="gradtui presets", description="List the presets.")
    compare = _Parser(prog="gradtui compare", description="Two presets side by side.")
    compare.add_argument("left", metavar="A")
    compare.add_argument("right", metavar="B")
    compare.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a field in both configurations",
    )
    compare.add_argument("--fps", type=_positive_int("--fps"), default=10)
    return {"": dashboard, "run": run, "presets": presets, "compare": compare}


def _positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
        return value

    return parse


def build_config(
    preset: str | None,
    config_file: str | None,
    assignments: Sequence[str],
    epochs: int | None = None,
) -> RunConfig:
    """The configuration the flags describe: preset, then file, then --set, then --epochs."""
    config = (
        get_preset(preset).config
        if preset
        else (RunConfig() if config_file else get_preset(DEFAULT_PRESET).config)
    )
    if config_file:
        from engine.config_io import load_config

        config = load_config(config_file, base=config)
    config = config.with_assignments(assignments)
    if epochs is not None:
        config = config.replace(epochs=epochs)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in ("run", "presets", "compare") else ""
    args_list = argv[1:] if command else argv
    try:
        args = _parsers()[command].parse_args(args_list)
        if command == "presets":
            return _presets()
        if command == "run":
            return _run(args)
        if command == "compare":
            return _compare(args)
        return _dashboard(args)
    except (UsageError, ConfigError) as error:
        print(f"gradtui: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gradtui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunFailed as error:
        print(f"gradtui: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:  # one line, not a traceback
        print(f"gradtui: error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILURE


def _presets() -> int:
    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        print(f"{name:<{width}}  {preset.title}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from engine.export import check_output_path
    from engine.headless import run_headless

    if not args.preset and not args.config:
        raise UsageError("run needs --preset NAME or --config FILE")
    config = build_config(args.preset, args.config, args.set, args.epochs)
    if args.out is not None:
        check_output_path(args.out)
    check_device(config)
    summary = run_headless(config, args.out)
    for line in summary.lines():
        print(line)
    if args.out is not None:
        if summary.exported:
            print(f"wrote {args.out} ({summary.exported} records)")
        else:
            print(f"nothing written to {args.out}: no step finished")
    if summary.interrupted:
        return 128 + summary.signal if summary.signal else EXIT_INTERRUPTED
    return EXIT_OK


def _dashboard(args: argparse.Namespace) -> int:
    config = build_config(args.preset, args.config, args.set)
    check_device(config)
    preset = args.preset or (None if args.config else DEFAULT_PRESET)
    GradTUI = import_quietly("tui.app").GradTUI  # textual, with no collections

    GradTUI(config=config, preset=preset, fps=args.fps).run()
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    left = get_preset(args.left).config.with_assignments(args.set)
    right = get_preset(args.right).config.with_assignments(args.set)
    CompareApp = import_quietly("tui.compare").CompareApp

    CompareApp(left=(args.left, left), right=(args.right, right), fps=args.fps).run()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
