#!/usr/bin/env python3
"""Checks the Dockerfile without building it (no image registry here): it parses with
BuildKit's own parser (PyPI `dockerfile`), and its runtime stage is what
packaging/image/build-local.sh builds and CI runs: the last stage, non-root user 10001 by
default (build arguments STRATA_UID/STRATA_GID), /usr/bin/strata as the entrypoint, the
state directory in STRATA_STATE_DIR, the binary from `--profile dist`.

Usage: dockerfile_check.py DOCKERFILE
"""
import sys

import dockerfile


def main() -> int:
    commands = dockerfile.parse_file(sys.argv[1])
    stages = {}
    current = None
    for c in commands:
        if c.cmd.upper() == "FROM":
            current = c.value[-1] if len(c.value) >= 3 and c.value[1].upper() == "AS" else c.value[0]
            stages[current] = []
        elif current is not None:
            stages[current].append(c)
    errors = []
    names = list(stages)
    if names[-1:] != ["runtime"]:
        errors.append(f"the last stage is {names[-1:]}, not runtime (the default target)")
    for needed in ("build", "postgres", "runtime"):
        if needed not in stages:
            errors.append(f"no stage {needed}")
    build_runs = " ".join(" ".join(c.value) for c in stages.get("build", []) if c.cmd.upper() == "RUN")
    if "--profile dist" not in build_runs:
        errors.append("the build stage does not build --profile dist")
    runtime = {c.cmd.upper(): c for c in stages.get("runtime", [])}
    args = [c.value[0] for c in stages.get("runtime", []) if c.cmd.upper() == "ARG"]
    if "STRATA_UID=10001" not in args:
        errors.append(f"runtime: ARG STRATA_UID=10001 missing ({args})")
    user = runtime.get("USER")
    if user is None or user.value[0] != "${STRATA_UID}:${STRATA_GID}":
        errors.append(f"runtime: USER is {user.value if user else None}, not the STRATA_UID user")
    entry = runtime.get("ENTRYPOINT")
    if entry is None or list(entry.value) != ["/usr/bin/strata"]:
        errors.append(f"runtime: ENTRYPOINT is {entry.value if entry else None}")
    env = runtime.get("ENV")
    if env is None or "STRATA_STATE_DIR" not in env.value:
        errors.append("runtime: no ENV STRATA_STATE_DIR")
    for e in errors:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{sys.argv[1]}: parses; stages {', '.join(names)}; runtime runs /usr/bin/strata as ${{STRATA_UID}} (10001)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
