"""The insider's attacks on the record and the gate, played against a real stack (``python -m redteam``)."""
