#!/usr/bin/env python3
"""Prints the documents of the YAML files given as one JSON array (for servicemonitor.mjs)."""
import json
import sys

import yaml

docs = []
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        docs.extend(d for d in yaml.safe_load_all(f) if d is not None)
json.dump(docs, sys.stdout)
