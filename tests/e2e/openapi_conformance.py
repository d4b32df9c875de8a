"""Every answer an SDK test receives is checked against certgate's own `/openapi.json`: its
status must be documented for the operation and its JSON body must match the documented
schema (JSON Schema 2020-12, as OpenAPI 3.1 has it).

This complements scripts/schemathesis, which fuzzes the same document but rarely gets past
validation to real objects (a valid CA certificate is not something it can invent); here the
SDK tests make real certificates, projects, keys and audit events.

Violations are recorded, not raised (the SDK would turn an exception in a hook into a retried
connection error); the `server` fixture fails the test with all of them at teardown.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

import jsonschema_rs


class Conformance:
    def __init__(self, origin: str):
        with urllib.request.urlopen(f"{origin}/openapi.json", timeout=30) as res:
            self.doc = json.load(res)
        self.failures: list[str] = []
        self._validators: dict[str, jsonschema_rs.Validator] = {}
        # Most literal segments first, so `/certificates/activate` wins over `/{certificate_id}`.
        templates = sorted(self.doc["paths"], key=lambda p: p.count("{"))
        self._routes = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", t) + "$"), t) for t in templates]

    def _operation(self, method: str, path: str) -> tuple[str, dict] | None:
        for pattern, template in self._routes:
            if pattern.match(path):
                op = self.doc["paths"][template].get(method)
                if op is not None:
                    return template, op
        return None

    def _validator(self, pointer: str) -> jsonschema_rs.Validator:
        # The whole document as the root, so `#/components/...` references resolve; its other
        # keys are unknown keywords to JSON Schema and ignored.
        if pointer not in self._validators:
            root = {k: v for k, v in self.doc.items() if k != "$schema"}
            root["$ref"] = urllib.parse.quote(pointer, safe="/~#")
            self._validators[pointer] = jsonschema_rs.Draft202012Validator(root)
        return self._validators[pointer]

    def check(self, response) -> None:
        """An httpx response hook."""
        try:
            self._check(response)
        except Exception as e:  # noqa: BLE001 - a bug here must fail the test, not the request
            self.failures.append(f"{response.request.method} {response.request.url.path}: checking failed: {e!r}")

    def _check(self, response) -> None:
        request = response.request
        method, path = request.method.lower(), request.url.path
        found = self._operation(method, path)
        if found is None:
            self.failures.append(f"{method.upper()} {path}: no such operation in /openapi.json")
            return
        template, op = found
        status = str(response.status_code)
        escaped = template.replace("~", "~0").replace("/", "~1")
        where = f"#/paths/{escaped}/{method}/responses/{status}"
        described = op["responses"].get(status)
        if described is None:
            self.failures.append(f"{method.upper()} {path}: status {status} is not documented")
            return
        if "$ref" in described:
            where = described["$ref"]
            described = self._resolve(where)
        content = described.get("content", {}).get("application/json")
        if content is None:
            return
        response.read()
        try:
            body = json.loads(response.content)
        except ValueError:
            self.failures.append(f"{method.upper()} {path} {status}: not JSON")
            return
        errors = list(self._validator(f"{where}/content/application~1json/schema").iter_errors(body))
        for e in errors[:5]:
            self.failures.append(
                f"{method.upper()} {path} {status}: {e.message} at {'/'.join(map(str, e.instance_path))}"
                f"\n    body: {json.dumps(body)[:600]}"
            )

    def _resolve(self, ref: str) -> dict:
        node = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node
