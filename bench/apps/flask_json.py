"""A minimal Flask application: one view returning JSON."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return {"message": "Hello, World!"}
