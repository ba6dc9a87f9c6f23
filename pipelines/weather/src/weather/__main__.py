"""`python -m weather <task>`: what each run_<task>.sh runs inside the image.

Exit status: 0 done, 1 the task found a problem with the data (message on stderr),
2 the task is misconfigured. Either way Airflow marks the task failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

from weather.extract import SourceError, extract
from weather.load import LoadError, load
from weather.quality import DataQualityError, check
from weather.transform import TransformError, transform
from weather.warehouse import ConfigurationError, Connection, connect, warehouse_url

TASKS: dict[str, Callable[[Connection], dict[str, int]]] = {
    "extract": extract,
    "transform": transform,
    "load": load,
    "check": check,
}
DATA_ERRORS = (SourceError, TransformError, LoadError, DataQualityError)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in TASKS:
        print(f"usage: python -m weather {{{'|'.join(TASKS)}}}", file=sys.stderr)
        return 2
    task = args[0]
    try:
        with connect(warehouse_url()) as conn:
            result = TASKS[task](conn)
    except ConfigurationError as error:
        print(f"weather {task}: {error}", file=sys.stderr)
        return 2
    except DATA_ERRORS as error:
        print(f"weather {task} failed: {error}", file=sys.stderr)
        return 1
    print(f"weather {task} done: {json.dumps(result, sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
