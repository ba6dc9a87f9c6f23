"""What the fast tests, the end-to-end tests and the benchmarks share, written once.

- `stacks`: evaluating a stack under the mock runtime (the one way the tests do it).
- `polling`: `until()`, waiting until a condition holds.
- `ports`: `free_port()`, a loopback port nothing listens on.
- `postgres`: a throwaway PostgreSQL server of its own, started from the local binaries.
"""
