"""Small WSGI apps, one per behaviour, served by ferrowsgi in the integration tests.

The server runs with ``cwd=tests`` so these import as ``apps.<module>:<name>``. Every app is
wrapped in ``wsgiref.validate.validator`` unless its docstring says why it breaks PEP 3333 on
purpose.
"""
