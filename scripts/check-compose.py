#!/usr/bin/env python3
"""What the Compose Specification's JSON schema cannot see in deploy/compose.yaml (check-jsonschema
checks the schema; scripts/verify.sh runs both, offline):

- every `depends_on`, config and named volume a service uses is defined, every config file exists;
- every service scripts/distributed.sh runs as its own process (`telar serve NAME`) has a telar
  container, and no telar container runs a service it does not;
- every telar container runs one service, listens beyond loopback, and probes the port that
  service has in scripts/distributed.sh and in its deploy/k8s Deployment.

Usage: python3 scripts/check-compose.py [COMPOSE_FILE]  (needs ruamel.yaml: check-jsonschema's)
"""

import re
import shlex
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


def load_all(path):
    with open(path, encoding="utf-8") as file:
        return [doc for doc in YAML(typ="safe", pure=True).load_all(file) if doc]


def distributed_services():
    """NAME → port offset, for every service scripts/distributed.sh starts."""
    script = (ROOT / "scripts/distributed.sh").read_text(encoding="utf-8")
    listed = shlex.split(re.search(r"^services=\((.*)\)$", script, re.M).group(1))
    ports = re.search(r"^declare -A ports=\((.*)\)$", script, re.M).group(1)
    offsets = dict(re.findall(r"\[([a-z-]+)\]=(\d+)", ports))
    started = set()
    for line in re.findall(r"^start \S+ \S+ \S+ (.*)$", script, re.M):
        for word in shlex.split(line):
            started.update(listed if word == "${services[@]}" else [word])
    return {name: int(offsets[name]) for name in started}


def k8s_ports():
    """NAME → containerPort, for every Deployment under deploy/k8s that runs `telar serve NAME`."""
    ports = {}
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        for doc in load_all(path):
            if doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                args = container.get("args", [])
                if "serve" in args:
                    ports[args[args.index("serve") + 1]] = container["ports"][0]["containerPort"]
    return ports


def main():
    compose_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy/compose.yaml"
    (compose,) = load_all(compose_path)
    services = compose.get("services") or {}
    problems = []

    for name, service in services.items():
        depends = service.get("depends_on") or []
        for other in depends:
            if other not in services:
                problems.append(f"services.{name}.depends_on: `{other}` is not a service")
        for config in service.get("configs") or []:
            source = config if isinstance(config, str) else config.get("source")
            if source not in (compose.get("configs") or {}):
                problems.append(f"services.{name}.configs: `{source}` is not a top-level config")
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            named = source and not source.startswith((".", "/", "~", "$"))
            if named and source not in (compose.get("volumes") or {}):
                problems.append(f"services.{name}.volumes: `{source}` is not a top-level volume")
    for name, config in (compose.get("configs") or {}).items():
        if "file" in config and not (compose_path.parent / config["file"]).is_file():
            problems.append(f"configs.{name}.file: {config['file']} does not exist")

    # Operator A's ports in scripts/distributed.sh (base 8000) are the defaults and deploy/k8s's.
    distributed = {name: 8000 + offset for name, offset in distributed_services().items()}
    k8s = k8s_ports()
    served = {}
    for name, service in services.items():
        if not str(service.get("image", "")).startswith("telar:"):
            continue
        command = [str(word) for word in service.get("command") or []]
        if len(command) != 2 or command[0] != "serve":
            problems.append(f"services.{name}.command: expected [serve, NAME], found {command}")
            continue
        served[command[1]] = name
        host_var = f"TELAR_SERVICES__{command[1].upper().replace('-', '_')}__HOST"
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        if str(environment.get(host_var)) != "0.0.0.0":
            problems.append(f"services.{name}.environment: {host_var} must be 0.0.0.0")
        test = [str(word) for word in (service.get("healthcheck") or {}).get("test") or []]
        probed = int(test[-1]) if test and test[-1].isdigit() else None
        expected = {ports[command[1]] for ports in (distributed, k8s) if command[1] in ports}
        if expected and {probed} != expected:
            problems.append(
                f"services.{name}.healthcheck: probes port {probed}, "
                f"the service's port is {' or '.join(map(str, sorted(expected)))}"
            )

    for missing in sorted(set(distributed) - set(served)):
        problems.append(f"scripts/distributed.sh runs `telar serve {missing}`: no container does")
    for extra in sorted(set(served) - set(distributed)):
        problems.append(f"services.{served[extra]} runs `{extra}`: scripts/distributed.sh does not")

    for problem in problems:
        print(f"{compose_path}: {problem}", file=sys.stderr)
    if problems:
        return 1
    others = len(services) - len(served)
    print(f"{compose_path}: ok ({len(served)} telar containers, {others} others)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
