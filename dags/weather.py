"""Daily weather summaries per station: the example pipeline in pipelines/weather/."""

from datetime import UTC, datetime

from pipeline_factory import pipeline_dag

dag = pipeline_dag(
    pipeline="weather",
    tasks=["extract", "transform", "load", "check"],
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    tags=["example"],
)
