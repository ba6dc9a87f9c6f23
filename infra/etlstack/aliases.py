"""The names deployed stacks know resources by, for resources since renamed.

A component names its children after itself (f"{name}-credentials") and hands its
sub-components derived names (f"{name}-postgres"), as Pulumi's component guidance
has it. The Kubernetes target and the platform images were named otherwise at first,
and stacks deployed then hold their resources under those names.
"""

from __future__ import annotations

import pulumi


def formerly(name: str) -> list[pulumi.Alias]:
    """The aliases of a resource that a deployed stack knows as `name`.

    Stacks deployed before logical names were derived from component names know the
    resource by that name: with the alias, `pulumi up` adopts it under its new name
    instead of creating a new one and deleting the old (a database's claim, a generated
    password). Only the name changed: the alias keeps the resource's parent and type.
    """
    return [pulumi.Alias(name=name)]
