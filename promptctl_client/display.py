"""How an eval run and a comparison read to a person: one printer for the client and the operator's CLI.

Each function takes the JSON the API answers (the same the operator's
``--json`` prints), so both CLIs show a run or a comparison the same way.
Standard library only, like the rest of the client.
"""

from __future__ import annotations


def progress_bar(progress: dict, columns: int) -> str:
    done, total = progress.get("done", 0), progress.get("total", 0)
    extra = f" invalid {progress['invalid']}" if progress.get("invalid") else ""
    extra += f" errors {progress['errors']}" if progress.get("errors") else ""
    tail = f" {done}/{total} {progress.get('status', '')}{extra}"
    head = f"run #{progress.get('run', '?')} "
    width = max(10, min(30, columns - len(head) - len(tail) - 3))
    filled = int(width * done / total) if total else 0
    return f"\r{head}[{'#' * filled}{'-' * (width - filled)}]{tail}"


def scores_table(out, scores: dict) -> None:
    rows = []
    for team, row in scores["teams"].items():
        interval = row["interval"]
        rows.append(
            [
                team,
                f"{row['correct']}/{row['total']}",
                f"{row['accuracy']:.0%}" if row["accuracy"] is not None else "-",
                f"{interval[0]:.0%}–{interval[1]:.0%}" if interval else "-",
                f"{row['priority_correct']}/{row['priority_total']}",
                f"{row['invalid_rate']:.0%}" if row["invalid_rate"] is not None else "-",
                f"{row['latency_p50']:.2f}s" if row["latency_p50"] is not None else "-",
                f"{row['latency_p95']:.2f}s" if row["latency_p95"] is not None else "-",
            ]
        )
    out.table(rows, ["team", "correct", "accuracy", "95% interval", "priority", "invalid", "p50", "p95"])
    confusion = scores["confusion"]
    out.human()
    out.human("confusion (rows: label, columns: answer)")
    out.table(
        [[row] + [confusion["counts"][row][column] for column in confusion["columns"]] for row in confusion["rows"]],
        ["label"] + confusion["columns"],
    )
    if scores.get("flaky"):
        out.human(f"flaky tickets (answers differ across attempts): {', '.join(scores['flaky'])}")


def run_show(out, summary: dict) -> None:
    progress = summary["progress"]
    wall = f", {summary['wall_seconds']:.1f}s" if summary.get("wall_seconds") is not None else ""
    out.human(
        f"run #{summary['id']}: {summary['agent']} v{summary['version']} on {summary['testset']} v{summary['testset_version']}"
        f" ×{summary['repeats']} — {summary['status']} ({progress['done']}/{progress['total']}{wall})"
    )
    if summary.get("status_reason"):
        out.human(f"  {summary['status_reason']}")
    for warning in summary.get("label_warnings", []):
        out.human(f"  warning: {warning['message']}")
    if summary.get("scores"):
        out.human()
        scores_table(out, summary["scores"])


def comparison_show(out, summary: dict) -> None:
    out.human(
        f"comparison #{summary['id']}: {summary['agent']} v{summary['baseline']['version']} (run #{summary['baseline']['run']})"
        f" → v{summary['candidate']['version']} (run #{summary['candidate']['run']}) on {summary['testset']}"
        f" v{summary['testset_version']}, tolerance {summary['tolerance']}"
    )
    rows = []
    for team, row in summary["teams"].items():
        b, c = row["baseline"], row["candidate"]
        rows.append(
            [
                team,
                f"{b['correct']}/{b['total']}",
                f"{c['correct']}/{c['total']}",
                f"{row['delta']:+d}",
                f"{c['interval'][0]:.0%}–{c['interval'][1]:.0%}" if c["interval"] else "-",
                f"{row['mcnemar_p']:.3g}",
                "REGRESSED" if row["regressed"] else "ok",
            ]
        )
    out.table(rows, ["team", "baseline", "candidate", "delta", "candidate 95%", "McNemar p", "verdict"])
    arrows = {"right_to_wrong": "right → wrong", "wrong_to_right": "wrong → right"}
    for flip in summary["flips"]:
        out.human(
            f"  {flip['ticket']} ({flip['team']}): {arrows.get(flip['direction'], flip['direction'])} "
            f"[{flip['baseline_answer']} → {flip['candidate_answer']}]"
        )
    if summary.get("unpaired"):
        out.human(f"  not compared (no scored answer in one run): {', '.join(summary['unpaired'])}")
    for warning in summary.get("label_warnings", []):
        out.human(f"  warning: {warning['message']}")
    out.human(f"exact McNemar p = {summary['mcnemar_p']:.3g} over {len(summary['flips'])} flipped ticket(s)")
    if summary["regressed"]:
        out.human(
            f"REGRESSED: {', '.join(summary['regressed_teams'])}. Promoting the candidate needs "
            f"--evidence {summary['evidence']} --accept-regression REASON (one more approval)."
        )
    else:
        out.human(f"No team regressed. Evidence for a promotion: --evidence {summary['evidence']}")
