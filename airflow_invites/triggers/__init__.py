"""Triggers: polling that runs in Airflow's triggerer, not in a worker slot."""
