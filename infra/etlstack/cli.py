"""`etlstack`: render a stack offline, promote pinned artifacts between stacks, add a pipeline,
and list, take and restore the backups of a stack's database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from etlstack import postgres_backup
from etlstack.config import ConfigError


def find_project_root(start: Path) -> Path:
    for directory in (start, *start.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    raise ConfigError(f"no Pulumi.yaml in {start} or above; run etlstack inside the project")


def _render(args: argparse.Namespace) -> int:
    from etlstack import render

    root = find_project_root(Path.cwd())
    evaluation = render.evaluate(args.stack, root)
    written = render.write(evaluation, Path(args.out))
    print(f"rendered stack {args.stack!r}: {len(written)} files in {args.out}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from etlstack import promote

    root = find_project_root(Path.cwd())
    return promote.run(
        root,
        source=args.source,
        destination=args.destination,
        outputs_file=Path(args.outputs) if args.outputs else None,
        dry_run=args.dry_run,
    )


def _new_pipeline(args: argparse.Namespace) -> int:
    from etlstack import new_pipeline

    root = find_project_root(Path.cwd())
    written = new_pipeline.create(root, args.name)
    print(f"created pipeline {args.name!r}:")
    for path in written:
        print(f"  {path.relative_to(root)}")
    print(
        f"next: make unit (its tests), then deploy; its DAG is {args.name!r}. "
        "See docs/pipelines-and-dags.md"
    )
    return 0


def _backup_commands(stack: str) -> postgres_backup.BackupCommands:
    root = find_project_root(Path.cwd())
    return postgres_backup.BackupCommands(postgres_backup.platform_of(root, stack))


def _backups(args: argparse.Namespace) -> int:
    names = _backup_commands(args.stack).list()
    print("\n".join(names) if names else f"stack {args.stack!r} has no complete backup yet")
    return 0


def _backup(args: argparse.Namespace) -> int:
    _backup_commands(args.stack).take()
    print(f"took a backup of stack {args.stack!r}: {_backup_commands(args.stack).list()[-1]}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    commands = _backup_commands(args.stack)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "restore replaces the stack's Airflow database and warehouse with the backup; "
                "add --yes to confirm"
            )
        answer = input(
            f"Replace the Airflow database and the warehouse of stack {args.stack!r} with "
            f"backup {args.backup}? Airflow stops meanwhile. Type the stack's name to go on: "
        )
        if answer.strip() != args.stack:
            print("nothing changed")
            return 1
    commands.restore(args.backup)
    print(f"restored stack {args.stack!r} from backup {args.backup}; Airflow is running again")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="etlstack", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    render = commands.add_parser(
        "render", help="write what `pulumi up -s STACK` would create, secrets masked"
    )
    render.add_argument("stack", help="the stack whose Pulumi.<stack>.yaml to render")
    render.add_argument("--out", required=True, help="directory to write (replaced)")
    render.set_defaults(handler=_render)

    promote = commands.add_parser(
        "promote", help="pin the artifacts one stack runs into another stack's file"
    )
    promote.add_argument("source", help="the stack whose `artifacts` output to take, e.g. dev")
    promote.add_argument("destination", help="the stack file to write them into, e.g. prod")
    promote.add_argument(
        "--outputs", help="read the source's outputs from this JSON file, not `pulumi stack output`"
    )
    promote.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    promote.set_defaults(handler=_promote)

    new = commands.add_parser(
        "new-pipeline", help="create pipelines/NAME/ and its DAG file, ready to test and deploy"
    )
    new.add_argument("name", help="the pipeline's name: lowercase letters, digits, '-' or '_'")
    new.set_defaults(handler=_new_pipeline)

    backups = commands.add_parser("backups", help="list the complete backups of STACK's database")
    backups.add_argument("stack")
    backups.set_defaults(handler=_backups)
    backup = commands.add_parser("backup", help="take a backup of STACK's database now")
    backup.add_argument("stack")
    backup.set_defaults(handler=_backup)
    restore = commands.add_parser(
        "restore",
        help="replace STACK's Airflow database and warehouse with BACKUP (see `backups`)",
    )
    restore.add_argument("stack")
    restore.add_argument("backup", help="a backup's name, e.g. 20261202T093000Z")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(handler=_restore)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"etlstack: {error}", file=sys.stderr)
        return 2
    except postgres_backup.BackupError as error:
        print(f"etlstack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
