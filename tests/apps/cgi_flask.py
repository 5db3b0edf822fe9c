"""A Flask application for ``ferrowsgi cgi`` behind Apache: ``url_for`` must see the script's
path (SCRIPT_NAME) as its prefix."""

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.get("/links/<name>")
def links(name):
    return jsonify(
        {
            "self": url_for("links", name=name),
            "external": url_for("links", name=name, _external=True),
            "script_root": request.script_root,
            "path": request.path,
            "args": request.args.to_dict(),
        }
    )
