"""The shared framework contract (see test_frameworks.py), in Pyramid."""

import hashlib
import json

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response


def _json(data):
    return Response(json.dumps(data), content_type="application/json", charset="utf-8")


def hello(request):
    greeting = request.params.get("greeting", "Hello")
    return Response(
        f"{greeting}, {request.matchdict['name']}!", content_type="text/plain", charset="utf-8"
    )


def query(request):
    return _json(request.GET.dict_of_lists())


def form(request):
    return _json(request.POST.dict_of_lists())


def upload(request):
    field = request.POST["file"]
    data = field.file.read()
    return _json(
        {
            "filename": field.filename,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "note": request.POST.get("note"),
        }
    )


def set_cookie(request):
    resp = Response("cookie set", content_type="text/plain", charset="utf-8")
    resp.set_cookie("flavor", "chocolate")
    return resp


def read_cookie(request):
    return _json({"flavor": request.cookies.get("flavor"), "other": request.cookies.get("other")})


def go_elsewhere(request):
    return HTTPFound(location="/hello/redirected")


def stream(request):
    return Response(
        app_iter=(f"chunk{i}\n".encode() for i in range(5)),
        content_type="text/plain",
        charset="utf-8",
    )


def boom(request):
    raise RuntimeError("framework-boom-pyramid")


ROUTES = {
    "hello": ("/hello/{name}", hello),
    "query": ("/query", query),
    "form": ("/form", form),
    "upload": ("/upload", upload),
    "set_cookie": ("/set-cookie", set_cookie),
    "read_cookie": ("/read-cookie", read_cookie),
    "redirect": ("/redirect", go_elsewhere),
    "stream": ("/stream", stream),
    "boom": ("/boom", boom),
}

with Configurator() as config:
    for name, (pattern, view) in ROUTES.items():
        config.add_route(name, pattern)
        config.add_view(view, route_name=name)
    app = config.make_wsgi_app()
