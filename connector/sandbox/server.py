"""Run a simulator (a WSGI app) as a real HTTP server on loopback, in a background thread.

Tests, the demo and the benchmarks all reach the simulators over real sockets, so cookies, timeouts,
connection reuse and concurrency behave as they would against SAP and BILL.
"""

import threading

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not print one line per request (benchmarks make thousands)."""

    def log_request(self, code="-", size="-"):
        pass


class RunningServer:
    """A started simulator server; `url` is its base address, `stop()` shuts it down."""

    def __init__(self, app, host="127.0.0.1", port=0):
        self.app = app
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sim-{self.port}", daemon=True
        )

    def start(self):
        self._thread.start()
        return self

    def serve_forever(self):
        """Serve in the calling thread (used by the `sandbox` command)."""
        self._server.serve_forever()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


def serve(app, host="127.0.0.1", port=0):
    """Start `app` on host:port (0 = any free port) in a daemon thread and return the RunningServer."""
    return RunningServer(app, host, port).start()
