"""A local, stateful emulator of the five platforms' APIs (``airflow-invites sandbox``).

Server code: never imported by hooks, operators or DAG files.
"""
