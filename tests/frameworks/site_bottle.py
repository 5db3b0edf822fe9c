"""The shared framework contract (see test_frameworks.py), in Bottle."""

import hashlib

import bottle

app = bottle.Bottle(catchall=True)


@app.get("/hello/<name>")
def hello(name):
    bottle.response.content_type = "text/plain; charset=utf-8"
    greeting = bottle.request.query.decode().get("greeting", "Hello")
    return f"{greeting}, {name}!"


@app.get("/query")
def query():
    q = bottle.request.query.decode()
    return {k: q.getall(k) for k in q}


@app.post("/form")
def form():
    f = bottle.request.forms.decode()
    return {k: f.getall(k) for k in f}


@app.post("/upload")
def upload():
    up = bottle.request.files.get("file")
    data = up.file.read()
    return {
        "filename": up.raw_filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": bottle.request.forms.get("note"),
    }


@app.get("/set-cookie")
def set_cookie():
    bottle.response.content_type = "text/plain"
    bottle.response.set_cookie("flavor", "chocolate")
    return "cookie set"


@app.get("/read-cookie")
def read_cookie():
    return {
        "flavor": bottle.request.get_cookie("flavor"),
        "other": bottle.request.get_cookie("other"),
    }


@app.get("/redirect")
def go_elsewhere():
    bottle.redirect("/hello/redirected", 302)


@app.get("/stream")
def stream():
    bottle.response.content_type = "text/plain"
    for i in range(5):
        yield f"chunk{i}\n"


@app.get("/boom")
def boom():
    raise RuntimeError("framework-boom-bottle")
