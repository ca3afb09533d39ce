"""carelink: link health, social-care and voluntary-sector records into one pseudonymised, consent-aware dataset."""

import os as _os

__version__ = "0.1.0"

#: Polars' allocator (jemalloc) settings, applied when carelink is imported before polars. Polars hands freed pages
#: back to the system within 1.5 s, for interactive sessions; a batch stage frees and re-allocates gigabytes every few
#: seconds, and faulting the pages in again each time is kernel work (10M-record export: 37–51 s of system time,
#: 92–100 s wall; 26 s and 79 s with these). Freed pages are still marked free to the kernel after 0.5 s (polars'
#: setting), which takes them back when memory runs short; they stay mapped, and count in the resident size, until
#: then or for 10 s. Set ``_RJEM_MALLOC_CONF`` to choose otherwise.
ALLOCATOR_SETTINGS = "muzzy_decay_ms:10000"
_os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_SETTINGS)
