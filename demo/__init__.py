"""``make demo``: the tutorial end to end on embedded defaults (see ``__main__``)."""
