"""Use cases: what a caller can do with jobs, files, chapters and chunks, each in one place.

No HTTP and no raw queries: a route parses its request, calls one function here, and presents
what it returns; these call the limits, the auth helpers and the store, in the order that
matters (``create.py`` holds the order of every check made when a job is created).
"""
