#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:  # a setting to fix: its one line, not a traceback through Django
        if "--traceback" in sys.argv:
            raise
        sys.exit(f"promptctl: settings: {error}")


if __name__ == "__main__":
    main()
