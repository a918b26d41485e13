"""PowerView: T302 power-meter exports to live, multi-tenant InfluxDB and Grafana dashboards."""

from importlib.metadata import version

__version__ = version("powerview")
__all__ = ["__version__"]
