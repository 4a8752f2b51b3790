"""The Invites view in the Airflow UI: people x platforms, coloured by the latest outcome.

``plugin.py`` is what Airflow loads in every component (registered in the ``airflow.plugins`` entry
point group) and stays light; the web app (``app.py``) is built on the api-server at its first request.
"""
