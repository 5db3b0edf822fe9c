"""mount_flask and mount_django joined by ``ferrowsgi.Mount`` in Python, for the mounting
tests: ``app`` mounts them at ``/flask`` and ``/django``; ``nested`` puts that same Mount
under ``/outer`` of another."""

from ferrowsgi import Mount
from frameworks import mount_django, mount_flask

app = Mount({"/flask": mount_flask.app, "/django": mount_django.app})

nested = Mount({"/outer": app})
