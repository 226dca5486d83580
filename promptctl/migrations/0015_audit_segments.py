"""Audit segments, and the one way an audit event may be deleted: archiving a sealed, exported segment.

- ``AuditSegment`` records a sealed stretch of the chain (``promptctl.audit.segments``).
- An audit event may now be deleted only while a segment covering its
  sequence exists with its export verified and is being archived
  (``archived_at`` set, in the same transaction). Every other DELETE of an
  event is still refused, on both databases; UPDATE still is, always.
- A segment row refuses DELETE, and UPDATE of anything but ``archived_at`` and
  ``archived_events``, which are set once.

As in 0002/0006, whoever may drop a trigger is not stopped; the seal
checkpoints and the segment rows' MACs name what they did (``audit verify``).
"""

from django.db import migrations, models

COVERED = """EXISTS (
    SELECT 1 FROM promptctl_auditsegment s
    WHERE OLD.sequence BETWEEN s.first_sequence AND s.last_sequence
      AND s.export_verified AND s.archived_at IS NOT NULL)"""

SEGMENT_FIXED = [
    "number",
    "first_sequence",
    "last_sequence",
    "last_mac",
    "previous_seal_mac",
    "file_mac",
    "export_path",
    "export_verified",
    "key_id",
    "row_mac",
    "sealed_at",
]

EVENT_REFUSAL = (
    "promptctl: audit events are append-only; only a sealed, exported segment can be archived "
    "(promptctl audit seal, then promptctl audit archive)"
)


def _postgresql() -> list[str]:
    changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in SEGMENT_FIXED)
    return [
        "DROP TRIGGER IF EXISTS promptctl_auditevent_immutable ON promptctl_auditevent",
        """CREATE TRIGGER promptctl_auditevent_immutable BEFORE UPDATE ON promptctl_auditevent
           FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('audit events are append-only')""",
        f"""CREATE OR REPLACE FUNCTION promptctl_auditevent_delete_guard() RETURNS trigger AS $$
           BEGIN
             IF NOT {COVERED} THEN
               RAISE EXCEPTION '{EVENT_REFUSAL} (DELETE of event % refused)', OLD.sequence;
             END IF;
             RETURN OLD;
           END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER promptctl_auditevent_undeletable BEFORE DELETE ON promptctl_auditevent
           FOR EACH ROW EXECUTE FUNCTION promptctl_auditevent_delete_guard()""",
        f"""CREATE OR REPLACE FUNCTION promptctl_auditsegment_guard() RETURNS trigger AS $$
           BEGIN
             IF TG_OP = 'DELETE' THEN
               RAISE EXCEPTION 'promptctl: audit segment % is part of the record and cannot be deleted', OLD.number;
             END IF;
             IF OLD.archived_at IS NOT NULL OR {changed} THEN
               RAISE EXCEPTION 'promptctl: audit segment % is sealed; only its archiving is recorded, once', OLD.number;
             END IF;
             RETURN NEW;
           END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER promptctl_auditsegment_guard BEFORE UPDATE OR DELETE ON promptctl_auditsegment
           FOR EACH ROW EXECUTE FUNCTION promptctl_auditsegment_guard()""",
    ]


def _sqlite() -> list[str]:
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in SEGMENT_FIXED)
    return [
        "DROP TRIGGER IF EXISTS promptctl_auditevent_undeletable",
        f"""CREATE TRIGGER promptctl_auditevent_undeletable BEFORE DELETE ON promptctl_auditevent
           WHEN NOT {COVERED}
           BEGIN SELECT RAISE(ABORT, '{EVENT_REFUSAL} (DELETE on promptctl_auditevent refused)'); END""",
        """CREATE TRIGGER promptctl_auditsegment_undeletable BEFORE DELETE ON promptctl_auditsegment
           BEGIN SELECT RAISE(ABORT, 'promptctl: an audit segment is part of the record and cannot be deleted'); END""",
        f"""CREATE TRIGGER promptctl_auditsegment_sealed BEFORE UPDATE ON promptctl_auditsegment
           WHEN OLD.archived_at IS NOT NULL OR {changed}
           BEGIN SELECT RAISE(ABORT, 'promptctl: an audit segment is sealed; only its archiving is recorded, once'); END""",
    ]


def _postgresql_reverse() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS promptctl_auditsegment_guard ON promptctl_auditsegment",
        "DROP FUNCTION IF EXISTS promptctl_auditsegment_guard()",
        "DROP TRIGGER IF EXISTS promptctl_auditevent_undeletable ON promptctl_auditevent",
        "DROP FUNCTION IF EXISTS promptctl_auditevent_delete_guard()",
        "DROP TRIGGER IF EXISTS promptctl_auditevent_immutable ON promptctl_auditevent",
        """CREATE TRIGGER promptctl_auditevent_immutable BEFORE UPDATE OR DELETE ON promptctl_auditevent
           FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('audit events are append-only')""",
    ]


def _sqlite_reverse() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS promptctl_auditsegment_undeletable",
        "DROP TRIGGER IF EXISTS promptctl_auditsegment_sealed",
        "DROP TRIGGER IF EXISTS promptctl_auditevent_undeletable",
        """CREATE TRIGGER promptctl_auditevent_undeletable BEFORE DELETE ON promptctl_auditevent
           BEGIN SELECT RAISE(ABORT, 'promptctl: audit events are append-only (DELETE on promptctl_auditevent refused)'); END""",
    ]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        builder = statements_by_vendor.get(vendor)
        if builder is None:
            raise RuntimeError(f"promptctl's audit guards are written for PostgreSQL and SQLite, not {vendor}")
        for statement in builder():
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0014_scale_indexes")]

    operations = [
        migrations.CreateModel(
            name="AuditSegment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField(editable=False, unique=True)),
                ("first_sequence", models.PositiveBigIntegerField(editable=False)),
                ("last_sequence", models.PositiveBigIntegerField(editable=False, unique=True)),
                (
                    "last_mac",
                    models.CharField(
                        editable=False, help_text="the MAC of event last_sequence (the seal)", max_length=64
                    ),
                ),
                (
                    "previous_seal_mac",
                    models.CharField(editable=False, help_text="the previous segment's seal", max_length=64),
                ),
                (
                    "file_mac",
                    models.CharField(editable=False, help_text="the MAC over the exported file", max_length=64),
                ),
                ("export_path", models.CharField(editable=False, max_length=500)),
                ("export_verified", models.BooleanField(default=False, editable=False)),
                (
                    "key_id",
                    models.CharField(editable=False, help_text="the audit key that MACed file and row", max_length=32),
                ),
                (
                    "row_mac",
                    models.CharField(editable=False, help_text="MAC over this row's sealed fields", max_length=64),
                ),
                ("sealed_at", models.DateTimeField(editable=False)),
                ("archived_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("archived_events", models.PositiveBigIntegerField(default=0, editable=False)),
            ],
            options={
                "ordering": ["number"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("first_sequence__gte", 1), ("last_sequence__gte", models.F("first_sequence"))
                        ),
                        name="auditsegment_range_valid",
                    )
                ],
            },
        ),
        migrations.RunPython(
            _run({"postgresql": _postgresql, "sqlite": _sqlite}),
            _run({"postgresql": _postgresql_reverse, "sqlite": _sqlite_reverse}),
        ),
    ]
