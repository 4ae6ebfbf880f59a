"""The soak: scripted reading sessions against the real app (``make soak``, ``python -m tests.soak``).

It lives with the tests, not in ``app/``: it is a development and release check that drives the product
from outside (the main window's public methods, offscreen), never something a clinician runs, and it
uses test fixtures and local reference data. ``session.py`` runs the rounds in one process and records
them; ``__main__.py`` runs that in a child process and judges it (a crash is the child's exit status and
the trace the app's own crash-evidence session left); ``actions.py`` is what a round does; ``files.py``
the studies it opens; ``playback.py`` the two-minute echo check; ``gc_repro.py`` the garbage-collector
crash reproduction."""
