"""Fixtures shared by the pipelines' tests, written once instead of copied per pipeline.

Each pipeline's tests run in an environment of their own (testing/run_pipeline_tests.py
builds one virtual environment per pipeline, with that pipeline's pinned dependencies),
so a fixture in the project's root conftest.py would not reach them, and a copy in every
pipeline's conftest.py would drift. This package is installed into every pipeline's test
environment instead, and registers itself as a pytest plugin (the `pytest11` entry point
in its pyproject.toml): a pipeline's tests just name the fixtures.

It lives outside pipelines/ on purpose: every folder there is a pipeline that the
platform builds and deploys as an image.

Fixtures (see `pipeline_testing.postgres`):

- `postgres`: a throwaway PostgreSQL server for the test session, with the warehouse role.
- `warehouse_url`: a fresh, empty warehouse database per test, as a `postgresql://` URL.
"""
