"""carelink: link health, social-care and voluntary-sector records into one pseudonymised, consent-aware dataset."""

__version__ = "0.1.0"
