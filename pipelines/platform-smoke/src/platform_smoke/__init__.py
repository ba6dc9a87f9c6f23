"""The platform smoke test's task, kept apart from any business pipeline.

It checks what the platform promises every task: it runs as a non-root user,
under a memory limit, with WAREHOUSE_URL set and the warehouse reachable over the
task network. It holds no business logic, so the smoke test stays valid whatever
pipelines a team adds or removes.
"""
