"""A Django application that reports the URLs it builds, for the mounting tests
(tests/test_mount.py): ``GET /hello/<name>`` answers with ``reverse()``'s path and the absolute
URI for that page, the script name Django took and its path."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "frameworks.mount_django_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path, reverse  # noqa: E402


def hello(request, name):
    url = reverse("hello", args=[name])
    return JsonResponse(
        {
            "framework": "django",
            "url": url,
            "external": request.build_absolute_uri(url),
            "script_root": request.META["SCRIPT_NAME"],
            "path": request.path,
        }
    )


urlpatterns = [path("hello/<str:name>", hello, name="hello")]

app = get_wsgi_application()
