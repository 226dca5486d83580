"""``python manage.py demo_story``: the tutorial through services and workers (started by ``make demo``)."""

import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Play the tutorial end to end through promptctl's services; expects a running worker (see `make demo`)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--web-url", default="http://127.0.0.1:8000", help="where the admin is served, for the final links")

    def handle(self, *args, **options) -> None:
        from promptctl.demo.story import story_play

        code = story_play(web_url=options["web_url"], write=lambda line: (self.stdout.write(line), self.stdout.flush()))
        if code:
            sys.exit(code)
