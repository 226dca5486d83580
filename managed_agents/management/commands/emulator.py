"""``python manage.py emulator``: serve the local Managed Agents emulator until Ctrl-C."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from managed_agents.emulator.knobs import DEPLOYMENT_LATEST_MODES, LOST_MODES, VERSION_STYLES
from managed_agents.emulator.server import EmulatorServer

KNOB_FLAGS = (
    ("--latency", str, "SECONDS or MIN-MAX from a user message to the reply (default 0.05)"),
    ("--fault-500", float, "probability that an API request is answered 500"),
    ("--fault-429", float, "probability that an API request is answered 429 with retry-after"),
    ("--fault-malformed", float, "probability that a reply is not the single JSON line"),
    ("--fault-stuck", float, "probability that a session stays running until interrupted"),
    ("--fault-lost", float, "probability that a request is carried out but its answer is lost"),
    ("--lost-routes", str, "comma-separated route names the lost-response fault applies to (default: all)"),
    ("--fault-529", float, "probability that an API request is answered 529 overloaded_error"),
    ("--fault-routes", str, "comma-separated route names the 500/429/529 faults apply to (default: all)"),
    ("--fault-stream-error", float, "probability that an event stream sends an SSE error event mid-turn"),
    ("--fault-stream-close", float, "probability that the server closes an event stream mid-turn"),
    ("--stream-fault-after", int, "events a faulted stream delivers before failing (default 1)"),
    ("--fault-rescheduling", float, "probability that a turn goes rescheduling, then running again"),
    ("--reschedule-delay", float, "seconds a rescheduled session stays rescheduling (default 0.1)"),
    ("--fault-terminated", float, "probability that a turn ends the session terminated, with no reply"),
    ("--fault-session-error", float, "probability that a turn ends with session.error and no reply"),
    ("--turn-steps", int, "model requests (each with one agent message) per turn (default 1)"),
    ("--interrupt-delay", float, "seconds from user.interrupt to idle (default 0)"),
    ("--create-limit", int, "session creates allowed per window before 429 (sliding window)"),
    ("--create-window", float, "length of the create-limit window in seconds (default 60)"),
    ("--retry-after", float, "seconds that injected 429s ask clients to wait (default 0.2)"),
    ("--noise", float, "probability of answering the second-best team"),
    ("--seed", int, "seed for faults and noise, for reproducible runs"),
)


class Command(BaseCommand):
    help = "Serve a local stand-in for the Managed Agents API, for offline runs, tests and benchmarks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
        parser.add_argument(
            "--port", type=int, default=8765, help="port to listen on (default 8765; 0 = any free port)"
        )
        parser.add_argument("--versions", choices=VERSION_STYLES, default=None, help="agent version numbering")
        parser.add_argument("--lost-mode", choices=LOST_MODES, default=None, help="a lost answer: 500, or close")
        parser.add_argument(
            "--deployment-latest",
            choices=DEPLOYMENT_LATEST_MODES,
            default=None,
            help="a deployment given a bare agent id: pin its latest version (default), or float with it",
        )
        for flag, kind, text in KNOB_FLAGS:
            parser.add_argument(flag, type=kind, default=None, help=text)

    def handle(self, *args: Any, **options: Any) -> None:
        names = [flag.removeprefix("--").replace("-", "_") for flag, _, _ in KNOB_FLAGS] + [
            "versions",
            "lost_mode",
            "deployment_latest",
        ]
        knobs = {name: options[name] for name in names if options.get(name) is not None}
        try:
            server = EmulatorServer(host=options["host"], port=options["port"], **knobs)
            server.start()
        except (ValueError, OSError) as refusal:
            raise CommandError(f"The emulator could not start: {refusal}") from refusal
        self.stdout.write(f"Managed Agents emulator serving at {server.base_url}")
        self.stdout.write(f"Point the SDK at it: anthropic.Anthropic(base_url={server.base_url!r}, api_key='any')")
        self.stdout.write("Control: POST /_emulator/config, GET /_emulator/stats, POST /_emulator/reset. Ctrl-C stops.")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Emulator stopped.")
