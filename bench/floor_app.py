"""The floor for HTTP figures: a hello-world Flask app, served with the app's gunicorn settings."""

from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello() -> str:
    return "Hello, world"
