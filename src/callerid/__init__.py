"""callerid: a self-hostable verified-business caller-ID platform."""

__version__ = "0.1.0"
