"""`etlstack`: render a stack offline, promote pinned artifacts between stacks, add a pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"etlstack: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
