"""Entry point of the policy pack: serves the rules in etlstack.policies to the engine.

Building a PolicyPack starts the analyzer server and blocks, so nothing but that
happens here; the rules themselves are unit-tested without the engine.
"""

from pulumi_policy import Policy, PolicyPack

from etlstack.policies import POLICY_PACK_NAME, all_policies

policies: list[Policy] = [*all_policies()]
PolicyPack(name=POLICY_PACK_NAME, policies=policies)
