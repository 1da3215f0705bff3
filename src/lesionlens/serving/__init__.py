"""The torch-free REST server: ONNX Runtime, FastAPI and uvicorn, with a web page.

Nothing under this package imports torch, pandas or lightning (a test checks it), so the `serve`
extra installs and runs on a small CPU machine without them.
"""
