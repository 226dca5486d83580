"""How a ticket is put to the agent: one rule, used by evals, the API and the benchmarks alike."""


def ticket_text(*, subject: str, body: str) -> str:
    """``Subject: <subject>``, a blank line, then the body, exactly as the tutorial sent tickets."""
    return "Subject: " + subject + "\n\n" + body
