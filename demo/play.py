"""``python -m demo.play --web-url URL``: play the story in a process of its own (started by ``python -m demo``).

The launcher starts the emulator, the worker and the web server first; this
process sets Django up, then runs the story through the services.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.play")
    parser.add_argument(
        "--web-url", default="http://127.0.0.1:8000", help="where the admin is served, for the final links"
    )
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import logging

    # Checkpoints are log lines too, for log shipping; the story's output is for people (they are in the file).
    logging.getLogger("promptctl.audit.checkpoint").setLevel(logging.WARNING)
    from demo.story import story_play

    return story_play(web_url=options.web_url)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
