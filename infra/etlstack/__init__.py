"""etlstack: a data-pipeline platform (PostgreSQL, Airflow 3, a registry) as Pulumi code."""
