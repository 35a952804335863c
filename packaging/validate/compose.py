#!/usr/bin/env python3
"""Validates a docker compose file against the Compose specification's JSON schema.

Usage: compose.py SCHEMA.json COMPOSE.yaml. Exit 0 when valid, 1 with every error
(its path in the file and the schema's message) when not. YAML merge keys (`<<:`) are
resolved first, as compose does.
"""
import json
import sys

import jsonschema
import yaml


def main() -> int:
    schema_path, compose_path = sys.argv[1], sys.argv[2]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(compose_path, encoding="utf-8") as f:
        document = yaml.safe_load(f)
    if not isinstance(document, dict) or not document.get("services"):
        print(f"{compose_path}: no services", file=sys.stderr)
        return 1
    # The schema names draft 2019-09 with a trailing '#' that jsonschema does not look up.
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft201909Validator)
    if "2019-09" in schema.get("$schema", ""):
        validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.path))
    for error in errors:
        where = "/".join(str(p) for p in error.path) or "(top)"
        print(f"{compose_path}: {where}: {error.message}", file=sys.stderr)
    if errors:
        return 1
    print(f"{compose_path}: valid ({len(document['services'])} services, "
          f"schema {schema.get('title', schema_path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
