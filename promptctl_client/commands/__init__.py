"""Command groups of the ``promptctl`` client: each module has ``register(subparsers)``.

Names, arguments and human output follow ``python manage.py promptctl`` (promptctl/cli,
evals/cli.py), without ``--as``: the token says who acts.
"""
