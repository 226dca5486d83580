"""Database guards for the rules the services keep, so a write around them fails too.

Check and unique constraints live on the models. What they cannot say is here:

- Copies hold: an approval's ``requester`` is its request's requester, and a
  request's target and base versions belong to its agent (PostgreSQL:
  composite foreign keys, checked at once rather than at commit; SQLite:
  insert triggers).
- Immutable rows stay put: versions, approvals and audit events refuse UPDATE
  (and DELETE on PostgreSQL; SQLite's test flush deletes rows, so there only
  UPDATE is refused — TRUNCATE, which PostgreSQL's flush uses, fires no row trigger).
- A change request is filed as ``pending``; its target, base and evidence never
  change; it becomes ``approved`` only with enough approvals, ``applied`` only
  from ``approved``; a closed request never changes again.
- A pin is written only as an approved change request filed against its
  current revision says, naming a new request on every move.

Triggers are written twice (PL/pgSQL and SQLite) with the same conditions.
"""

from django.db import migrations

FINAL = "('applied','rejected','withdrawn','superseded')"

FROZEN_COLUMNS = [
    "agent_id", "channel", "kind", "base_version_id", "base_pin_revision", "target_version_id",
    "target_config_sha256", "canary_percent", "evidence_type", "evidence_id", "evidence",
    "accept_regression_reason", "approvals_required", "reason", "requested_by_id", "requested_at",
]

PIN_INSERT_ALLOWED = """EXISTS (
    SELECT 1 FROM promptctl_changerequest c
    WHERE c.id = NEW.change_id AND c.status = 'approved' AND c.agent_id = NEW.agent_id
      AND c.channel = NEW.channel AND c.base_pin_revision = 0 AND NEW.revision = 1
      AND c.kind IN ('promote','rollback') AND c.target_version_id = NEW.version_id
      AND NEW.canary_version_id IS NULL)"""

PIN_UPDATE_ALLOWED = """EXISTS (
    SELECT 1 FROM promptctl_changerequest c
    WHERE c.id = NEW.change_id AND NEW.change_id <> OLD.change_id AND c.status = 'approved'
      AND NEW.agent_id = OLD.agent_id AND NEW.channel = OLD.channel
      AND c.agent_id = NEW.agent_id AND c.channel = NEW.channel
      AND c.base_pin_revision = OLD.revision AND NEW.revision = OLD.revision + 1
      AND ((c.kind IN ('promote','rollback') AND NEW.version_id = c.target_version_id
            AND NEW.canary_version_id IS NULL)
        OR (c.kind = 'canary' AND NEW.version_id = OLD.version_id
            AND NEW.canary_version_id = c.target_version_id AND NEW.canary_percent = c.canary_percent)))"""

APPROVALS_SHORT = """(NEW.status = 'approved' AND OLD.status <> 'approved' AND (
    SELECT count(*) FROM promptctl_approval a WHERE a.change_id = NEW.id AND a.decision = 'approve'
) < NEW.approvals_required)"""

IMMUTABLE_TABLES = {
    "promptctl_agentversion": "agent versions are immutable",
    "promptctl_approval": "decisions on change requests are final",
    "promptctl_auditevent": "audit events are append-only",
}


def _postgresql() -> list[str]:
    frozen = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN_COLUMNS)
    statements = [
        # Composite foreign keys: the copies and the version-agent pairs always agree.
        """ALTER TABLE promptctl_approval ADD CONSTRAINT approval_requester_is_the_requests
           FOREIGN KEY (change_id, requester_id) REFERENCES promptctl_changerequest (id, requested_by_id)
           NOT DEFERRABLE""",
        """ALTER TABLE promptctl_changerequest ADD CONSTRAINT changerequest_target_of_same_agent
           FOREIGN KEY (target_version_id, agent_id) REFERENCES promptctl_agentversion (id, agent_id)
           NOT DEFERRABLE""",
        """ALTER TABLE promptctl_changerequest ADD CONSTRAINT changerequest_base_of_same_agent
           FOREIGN KEY (base_version_id, agent_id) REFERENCES promptctl_agentversion (id, agent_id)
           NOT DEFERRABLE""",
        """CREATE OR REPLACE FUNCTION promptctl_refuse_row_change() RETURNS trigger AS $$
           BEGIN
             RAISE EXCEPTION 'promptctl: % (% on % refused)', TG_ARGV[0], TG_OP, TG_TABLE_NAME;
           END $$ LANGUAGE plpgsql""",
        f"""CREATE OR REPLACE FUNCTION promptctl_changerequest_guard() RETURNS trigger AS $$
           BEGIN
             IF TG_OP = 'INSERT' THEN
               IF NEW.status <> 'pending' THEN
                 RAISE EXCEPTION 'promptctl: a change request is filed as pending, not %', NEW.status;
               END IF;
               RETURN NEW;
             END IF;
             IF TG_OP = 'DELETE' THEN
               RAISE EXCEPTION 'promptctl: change request % is part of the record and cannot be deleted', OLD.id;
             END IF;
             IF OLD.status IN {FINAL} THEN
               RAISE EXCEPTION 'promptctl: change request % is closed (%) and cannot change', OLD.id, OLD.status;
             END IF;
             IF {frozen} THEN
               RAISE EXCEPTION 'promptctl: the target and evidence of change request % are fixed once requested', OLD.id;
             END IF;
             IF {APPROVALS_SHORT} THEN
               RAISE EXCEPTION 'promptctl: change request % is short of the % approvals it needs', OLD.id, NEW.approvals_required;
             END IF;
             IF NEW.status = 'applied' AND OLD.status <> 'approved' THEN
               RAISE EXCEPTION 'promptctl: change request % can be applied only once approved', OLD.id;
             END IF;
             RETURN NEW;
           END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER promptctl_changerequest_guard BEFORE INSERT OR UPDATE OR DELETE ON promptctl_changerequest
           FOR EACH ROW EXECUTE FUNCTION promptctl_changerequest_guard()""",
        f"""CREATE OR REPLACE FUNCTION promptctl_pin_guard() RETURNS trigger AS $$
           BEGIN
             IF TG_OP = 'DELETE' THEN
               RAISE EXCEPTION 'promptctl: pins cannot be deleted; move them with a change request';
             END IF;
             IF TG_OP = 'INSERT' AND NOT {PIN_INSERT_ALLOWED} THEN
               RAISE EXCEPTION 'promptctl: a pin is created only by applying an approved promotion filed with no pin';
             END IF;
             IF TG_OP = 'UPDATE' AND NOT {PIN_UPDATE_ALLOWED} THEN
               RAISE EXCEPTION 'promptctl: a pin moves only as a new approved change request filed against its current revision says';
             END IF;
             RETURN NEW;
           END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER promptctl_pin_guard BEFORE INSERT OR UPDATE OR DELETE ON promptctl_pin
           FOR EACH ROW EXECUTE FUNCTION promptctl_pin_guard()""",
    ]
    for table, why in IMMUTABLE_TABLES.items():
        statements.append(
            f"""CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('{why}')"""
        )
    return statements


def _sqlite() -> list[str]:
    frozen = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN_COLUMNS)
    statements = [
        """CREATE TRIGGER promptctl_approval_requester_copy BEFORE INSERT ON promptctl_approval
           WHEN NEW.requester_id IS NOT (SELECT requested_by_id FROM promptctl_changerequest WHERE id = NEW.change_id)
           BEGIN SELECT RAISE(ABORT, 'promptctl: an approval''s requester must be its change request''s requester'); END""",
        """CREATE TRIGGER promptctl_changerequest_insert_guard BEFORE INSERT ON promptctl_changerequest
           WHEN NEW.status <> 'pending'
             OR (SELECT agent_id FROM promptctl_agentversion WHERE id = NEW.target_version_id) IS NOT NEW.agent_id
             OR (NEW.base_version_id IS NOT NULL
                 AND (SELECT agent_id FROM promptctl_agentversion WHERE id = NEW.base_version_id) IS NOT NEW.agent_id)
           BEGIN SELECT RAISE(ABORT, 'promptctl: a change request is filed as pending, for versions of its own agent'); END""",
        f"""CREATE TRIGGER promptctl_changerequest_closed BEFORE UPDATE ON promptctl_changerequest
           WHEN OLD.status IN {FINAL}
           BEGIN SELECT RAISE(ABORT, 'promptctl: a closed change request cannot change'); END""",
        f"""CREATE TRIGGER promptctl_changerequest_frozen BEFORE UPDATE ON promptctl_changerequest
           WHEN {frozen}
           BEGIN SELECT RAISE(ABORT, 'promptctl: the target and evidence of a change request are fixed once requested'); END""",
        f"""CREATE TRIGGER promptctl_changerequest_transitions BEFORE UPDATE ON promptctl_changerequest
           WHEN {APPROVALS_SHORT} OR (NEW.status = 'applied' AND OLD.status NOT IN ('approved', 'applied'))
           BEGIN SELECT RAISE(ABORT, 'promptctl: a change request is approved only with enough approvals, and applied only once approved'); END""",
        f"""CREATE TRIGGER promptctl_pin_insert_guard BEFORE INSERT ON promptctl_pin
           WHEN NOT {PIN_INSERT_ALLOWED}
           BEGIN SELECT RAISE(ABORT, 'promptctl: a pin is created only by applying an approved promotion filed with no pin'); END""",
        f"""CREATE TRIGGER promptctl_pin_update_guard BEFORE UPDATE ON promptctl_pin
           WHEN NOT {PIN_UPDATE_ALLOWED}
           BEGIN SELECT RAISE(ABORT, 'promptctl: a pin moves only as a new approved change request filed against its current revision says'); END""",
    ]
    for table, why in IMMUTABLE_TABLES.items():
        statements.append(
            f"""CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table}
                BEGIN SELECT RAISE(ABORT, 'promptctl: {why}'); END"""
        )
    return statements


def _postgresql_reverse() -> list[str]:
    statements = [
        "ALTER TABLE promptctl_approval DROP CONSTRAINT IF EXISTS approval_requester_is_the_requests",
        "ALTER TABLE promptctl_changerequest DROP CONSTRAINT IF EXISTS changerequest_target_of_same_agent",
        "ALTER TABLE promptctl_changerequest DROP CONSTRAINT IF EXISTS changerequest_base_of_same_agent",
        "DROP TRIGGER IF EXISTS promptctl_changerequest_guard ON promptctl_changerequest",
        "DROP TRIGGER IF EXISTS promptctl_pin_guard ON promptctl_pin",
    ]
    statements += [f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}" for table in IMMUTABLE_TABLES]
    statements += [
        "DROP FUNCTION IF EXISTS promptctl_changerequest_guard()",
        "DROP FUNCTION IF EXISTS promptctl_pin_guard()",
        "DROP FUNCTION IF EXISTS promptctl_refuse_row_change()",
    ]
    return statements


def _sqlite_reverse() -> list[str]:
    names = [
        "promptctl_approval_requester_copy", "promptctl_changerequest_insert_guard", "promptctl_changerequest_closed",
        "promptctl_changerequest_frozen", "promptctl_changerequest_transitions", "promptctl_pin_insert_guard",
        "promptctl_pin_update_guard",
    ] + [f"{table}_immutable" for table in IMMUTABLE_TABLES]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        builder = statements_by_vendor.get(vendor)
        if builder is None:
            raise RuntimeError(f"promptctl's database guards are written for PostgreSQL and SQLite, not {vendor}")
        for statement in builder():
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": _postgresql, "sqlite": _sqlite}),
            _run({"postgresql": _postgresql_reverse, "sqlite": _sqlite_reverse}),
        ),
    ]
