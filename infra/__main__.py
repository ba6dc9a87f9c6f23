"""Entry point of `pulumi up`: validate the stack's settings, then declare the platform."""

from pathlib import Path

import pulumi

from etlstack.config import ConfigError, load_from_pulumi
from etlstack.program import build

try:
    build(load_from_pulumi(project_root=Path(__file__).resolve().parent.parent))
except ConfigError as error:
    # RunError ends the program with the message alone, no traceback.
    raise pulumi.RunError(str(error)) from None
