"""Composition root: settings, wiring and the `backbone` command line. Only this package knows every part."""
