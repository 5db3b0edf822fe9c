"""The shared framework contract (see test_frameworks.py), in Falcon."""

import hashlib

import falcon


def _lists(mapping):
    return {k: v if isinstance(v, list) else [v] for k, v in mapping.items()}


class Hello:
    def on_get(self, req, resp, name):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"{req.get_param('greeting', default='Hello')}, {name}!"


class Query:
    def on_get(self, req, resp):
        resp.media = _lists(req.params)


class Form:
    def on_post(self, req, resp):
        resp.media = _lists(req.get_media())


class Upload:
    def on_post(self, req, resp):
        result = {"note": None}
        for part in req.get_media():
            if part.name == "file":
                data = part.stream.read()
                result.update(
                    filename=part.filename,
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            elif part.name == "note":
                result["note"] = part.text
        resp.media = result


class SetCookie:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.set_cookie("flavor", "chocolate", secure=False)
        resp.text = "cookie set"


class ReadCookie:
    def on_get(self, req, resp):
        resp.media = {"flavor": req.cookies.get("flavor"), "other": req.cookies.get("other")}


class Redirect:
    def on_get(self, req, resp):
        raise falcon.HTTPFound("/hello/redirected")


class Stream:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = (f"chunk{i}\n".encode() for i in range(5))


class Boom:
    def on_get(self, req, resp):
        raise RuntimeError("framework-boom-falcon")


app = falcon.App()
app.req_options.auto_parse_qs_csv = False
app.add_route("/hello/{name}", Hello())
app.add_route("/query", Query())
app.add_route("/form", Form())
app.add_route("/upload", Upload())
app.add_route("/set-cookie", SetCookie())
app.add_route("/read-cookie", ReadCookie())
app.add_route("/redirect", Redirect())
app.add_route("/stream", Stream())
app.add_route("/boom", Boom())
