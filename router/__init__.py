"""Notification router: alert events in, per-contact-method delivery jobs out."""

__version__ = "0.1.0"
