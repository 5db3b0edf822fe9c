"""A minimal Django project in one module: one URL, one view returning JSON."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.django_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request):
    return JsonResponse({"message": "Hello, World!"})


urlpatterns = [path("", hello)]

application = get_wsgi_application()
