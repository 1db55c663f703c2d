"""A stateful stand-in for the Gainsight PX REST API: `gspx sandbox`, the end-to-end tests, the benchmarks.

px.py is the state machine (users, accounts, custom events, the request log), faults.py its fault
knobs, replies.py what it answers, server.py how it is served (HTTP on 127.0.0.1, `responses`).
"""

from gspx_cli.sandbox.px import FakePX
from gspx_cli.sandbox.replies import API_KEY_HEADER, DROP, RecordedRequest, Reply, _error
from gspx_cli.sandbox.server import SandboxServer, add_to_responses, serve

__all__ = ["API_KEY_HEADER", "DROP", "FakePX", "RecordedRequest", "Reply", "SandboxServer", "_error",
           "add_to_responses", "serve"]
