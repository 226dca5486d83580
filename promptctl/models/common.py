"""Names every model module shares."""

PRODUCTION = "production"
