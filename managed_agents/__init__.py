"""The outside world: the Managed Agents API through the ``anthropic`` SDK, and its local emulator.

The bottom layer: it imports no app of this project (``promptctl``, ``evals``,
``triage``), only Django's settings. Everything that talks to Managed Agents
goes through here, so the live API and the emulator share one code path.
"""
