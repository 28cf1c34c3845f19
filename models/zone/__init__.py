"""The zone file and the zone it configures.

    schema       what the file holds: fields, choices, defaults, the parsed ZoneDocument
    json_schema  the same fields as a JSON Schema for editors (docs/zone.schema.json)
    reader       YAML nodes to checked values, each problem with its file:line
    parse        zone file text to a ZoneDocument, or a ZoneFileError listing every problem
    apply        a ZoneDocument written to the database; the caller owns the transaction
    load         parse, then apply in one transaction
    config       ZoneConfig, the zone in force, read back from the database

load imports parse and apply; parse imports reader; every module imports schema, and schema
imports nothing here but `models.sla`. This package itself imports none of them, so reading
the zone in force never loads the YAML reader.
"""
