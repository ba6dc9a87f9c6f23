"""The weather pipeline: station observations in, daily summaries per station out.

Each task is a function taking a database connection, so it runs and is tested
without Airflow. Tasks run in separate containers and hand data to each other
through staging tables in the warehouse, never through files.
"""
