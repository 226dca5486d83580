"""A local stand-in for the Managed Agents API, driven by the real SDK over loopback HTTP.

``server.EmulatorServer`` runs it in-process; ``python manage.py emulator`` serves it;
``model`` is the offline triage model and ``lexicon.json`` its editable cue list.
See docs/EMULATOR.md.
"""
