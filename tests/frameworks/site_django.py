"""The shared framework contract (see test_frameworks.py), in Django."""

import hashlib
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "frameworks.django_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402


def hello(request, name):
    greeting = request.GET.get("greeting", "Hello")
    return HttpResponse(f"{greeting}, {name}!", content_type="text/plain")


def query(request):
    return JsonResponse({k: request.GET.getlist(k) for k in request.GET})


def form(request):
    return JsonResponse({k: request.POST.getlist(k) for k in request.POST})


def upload(request):
    f = request.FILES["file"]
    data = f.read()
    return JsonResponse(
        {
            "filename": f.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "note": request.POST.get("note"),
        }
    )


def set_cookie(request):
    resp = HttpResponse("cookie set", content_type="text/plain")
    resp.set_cookie("flavor", "chocolate")
    return resp


def read_cookie(request):
    return JsonResponse(
        {"flavor": request.COOKIES.get("flavor"), "other": request.COOKIES.get("other")}
    )


def go_elsewhere(request):
    return HttpResponseRedirect("/hello/redirected")


def stream(request):
    return StreamingHttpResponse((f"chunk{i}\n" for i in range(5)), content_type="text/plain")


def boom(request):
    raise RuntimeError("framework-boom-django")


urlpatterns = [
    path("hello/<str:name>", hello),
    path("query", query),
    path("form", form),
    path("upload", upload),
    path("set-cookie", set_cookie),
    path("read-cookie", read_cookie),
    path("redirect", go_elsewhere),
    path("stream", stream),
    path("boom", boom),
]

app = get_wsgi_application()
