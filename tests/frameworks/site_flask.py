"""The shared framework contract (see test_frameworks.py), in Flask."""

import hashlib

from flask import Flask, Response, jsonify, redirect, request

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name):
    return Response(f"{request.args.get('greeting', 'Hello')}, {name}!", mimetype="text/plain")


@app.get("/query")
def query():
    return jsonify({k: request.args.getlist(k) for k in request.args})


@app.post("/form")
def form():
    return jsonify({k: request.form.getlist(k) for k in request.form})


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(
        filename=f.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/set-cookie")
def set_cookie():
    resp = Response("cookie set", mimetype="text/plain")
    resp.set_cookie("flavor", "chocolate")
    return resp


@app.get("/read-cookie")
def read_cookie():
    return jsonify(flavor=request.cookies.get("flavor"), other=request.cookies.get("other"))


@app.get("/redirect")
def go_elsewhere():
    return redirect("/hello/redirected", code=302)


@app.get("/stream")
def stream():
    def generate():
        for i in range(5):
            yield f"chunk{i}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/boom")
def boom():
    raise RuntimeError("framework-boom-flask")
