"""WSGI entry point: `gunicorn wsgi:app`."""

import gc

from portal import create_app

app = create_app()

# What start-up built (modules, routes, compiled statements, catalogs) lives as long as
# the worker: moved out of the garbage collector's reach, so that its full collections
# (one every few thousand requests, ~0.1 s each, walking ~200,000 objects) walk only what
# requests made (`gc.freeze`, Python's gc docs).
gc.collect()
gc.freeze()
