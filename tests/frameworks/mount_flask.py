"""A Flask application that reports the URLs it builds, for the mounting tests
(tests/test_mount.py): ``GET /hello/<name>`` answers with ``url_for``'s path and full URL for
that page, Flask's script root and its path."""

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name):
    return jsonify(
        framework="flask",
        url=url_for("hello", name=name),
        external=url_for("hello", name=name, _external=True),
        script_root=request.script_root,
        path=request.path,
    )
