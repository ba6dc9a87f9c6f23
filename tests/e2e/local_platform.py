"""Try the local platform without the Pulumi CLI: `make try`, `make credentials`, `make down`.

Where the Pulumi engine cannot be installed, the end-to-end harness's applier (the
stand-in for `pulumi up`, tests/e2e/deploy.py) creates the `local` stack from this
working tree on the local Docker Engine, on the stack's own ports, and leaves it up:

    python tests/e2e/local_platform.py up
    python tests/e2e/local_platform.py credentials [--show-secrets]
    python tests/e2e/local_platform.py down [--delete-data]

`down` removes the kept platforms (this one, and one an end-to-end run kept with
E2E_KEEP_PLATFORM=1) and keeps their volumes, so PostgreSQL's data and the registry's
images are there at the next `up`, unless --delete-data. It never stops the engine.

The platform's generated passwords and keys are derived from a random seed kept in
.state/ (git-ignored, readable by its owner only, like `make up`'s passphrase), so an
`up` after a `down` opens the data the previous platform left.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors
import harness
from harness import PROJECT_ROOT, log

STACK = "local"
# The name an end-to-end session deploys the local stack under (tests/e2e/conftest.py).
E2E_STACK = "e2e"
HERE = Path(__file__).resolve().parent
SEED = PROJECT_ROOT / ".state" / "try-secret-seed"


def _secret_seed() -> bytes:
    if not SEED.is_file():
        SEED.parent.mkdir(mode=0o700, exist_ok=True)
        SEED.touch(mode=0o600)
        SEED.write_text(secrets.token_hex(32))
    return bytes.fromhex(SEED.read_text().strip())


def _engine() -> docker.DockerClient:
    if subprocess.run([str(HERE / "engine.sh"), "start"], check=False).returncode != 0:
        sys.exit("no Docker Engine could be started; see the message above")
    return docker.from_env(timeout=300)


def up() -> int:
    client = _engine()
    applier, overrides = harness.platform_applier(
        client, PROJECT_ROOT, STACK, STACK, None, _secret_seed()
    )
    # What changed in the working tree is created anew; the volumes (the data) stay.
    applier.destroy(volumes=False)
    platform = harness.start_platform(client, applier, overrides)
    print(f"the local platform is up: {platform.airflow.url}")
    print("sign in with: make credentials SHOW_SECRETS=1; remove it with: make down")
    return 0


def credentials(show_secrets: bool) -> int:
    client = _engine()
    applier = harness.applier_for(client, PROJECT_ROOT, STACK, STACK)
    names = applier.declared(harness.deploy.CONTAINER)
    init = next(n for n in names if n.endswith("-airflow-init"))
    postgres = next(n for n in names if n.endswith("-postgres"))
    try:
        env = dict(
            e.split("=", 1) for e in client.containers.get(init).attrs["Config"]["Env"] or []
        )
    except docker.errors.NotFound:
        sys.exit("no local platform is up; start it with: make try")
    password = env["ETLSTACK_ADMIN_PASSWORD"] if show_secrets else "[secret] (SHOW_SECRETS=1)"
    print(f"Airflow:   {applier.evaluation.outputs['airflowUrl']}")
    print(f"user:      {env['ETLSTACK_ADMIN_USERNAME']}")
    print(f"password:  {password}")
    print(f"warehouse: docker exec -it {postgres} psql -U warehouse -d warehouse")
    return 0


def down(delete_data: bool) -> int:
    client = _engine()
    for name in (STACK, E2E_STACK):
        applier = harness.applier_for(client, PROJECT_ROOT, STACK, name)
        applier.destroy(volumes=delete_data)
    if delete_data:
        SEED.unlink(missing_ok=True)
    else:
        log.info(
            "volumes kept (PostgreSQL's data, the registry's images); DELETE_DATA=1 removes them"
        )
    return 0


def main() -> int:
    harness.progress_to_terminal()
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="create the local stack on this engine and keep it")
    shown = commands.add_parser("credentials", help="the URL, user and password of the platform")
    shown.add_argument("--show-secrets", action="store_true", help="print the password itself")
    removed = commands.add_parser("down", help="remove the kept platforms; volumes stay")
    removed.add_argument("--delete-data", action="store_true", help="remove their volumes too")
    args = top.parse_args()
    if args.command == "up":
        return up()
    if args.command == "credentials":
        return credentials(args.show_secrets)
    return down(args.delete_data)


if __name__ == "__main__":
    sys.exit(main())
