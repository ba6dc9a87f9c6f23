"""A throwaway PostgreSQL server, empty as a new data directory is: the same one the
pipelines' tests use (testing/pipeline_testing), so it is written once."""

from pipeline_testing.postgres import Server, throwaway_server

__all__ = ["Server", "throwaway_server"]
