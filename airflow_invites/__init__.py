"""airflow-invites: invite people into groups on five platforms, idempotently."""

__version__ = "0.1.0"
