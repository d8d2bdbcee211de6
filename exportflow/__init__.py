"""exportflow: asynchronous bulk exports from PostgreSQL, built on Prefect 3."""

__version__ = "0.1.0"
