"""koha-gateway: a SIP2 (3M Standard Interchange Protocol 2.00) server for Koha libraries."""

__version__ = "0.2.0"
