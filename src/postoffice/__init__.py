"""postoffice: a complete email system in one Python process."""

__version__ = "0.1.0"
