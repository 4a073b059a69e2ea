"""xfer: verified, parallel copies of Swift objects (Glance images) between OpenStack regions."""

__version__ = "0.1.0"
