"""Rebuild a provider's schema from its prebuilt cdktf binding package.

The cdktf binding packages (npm ``@cdktf/provider-aws``, ``@cdktf/provider-archive``) are generated from the
provider's own schema (``terraform providers schema -json``) and keep, in the TypeScript source embedded in each
module's source map, everything Terraform's validation needs:

- ``public static readonly tfResourceType = "aws_lambda_function"``: the type name;
- ``synthesizeHclAttributes()`` and ``<struct>ToHclTerraform()``: every configurable argument and block by its HCL
  name, with ``isBlock``, the collection kind (``simple``, ``list``, ``set``, ``map``, ``struct``) and the element
  type (``string``, ``numberList``, ``stringMap``... or the nested struct);
- ``// name - computed: C, optional: O, required: R`` before each field: the schema's flags, computed-only
  attributes included (they have no argument, only a getter such as ``getStringAttribute('arn')``);
- ``new XOutputReference(this, "name")`` (at most one), ``new XList(this, "name", wrapsSet)`` (repeated, list or
  set): how a block nests.

This module reads those and writes the schema in Terraform's own JSON format (``providers schema -json``'s
``provider_schemas`` entry), which :mod:`tfstandin.provider` serves. What the bindings do not carry is not in the
result: provider-side validators (enum values, patterns, ranges, conflicts), ``sensitive`` and deprecation flags,
descriptions, and the maximum item count of provider-configuration blocks.

Regenerate (see README.md beside this package)::

    python -m tfstandin.schema_gen --out tools/tfstandin/schemas
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# package, its version, and the provider it was generated from
PACKAGES = {
    "aws": ("@cdktf/provider-aws", "20.1.0", "registry.terraform.io/hashicorp/aws", "5.100.0"),
    "archive": ("@cdktf/provider-archive", "11.0.1", "registry.terraform.io/hashicorp/archive", "2.7.1"),
}

# The AWS provider has some 1,500 resource and 600 data source types; the stand-in keeps the services this
# repository's configuration uses and those a serverless API grows into (module directory name prefixes).
AWS_SERVICES = (
    "acm", "api-gateway", "apigatewayv2", "appautoscaling", "caller-identity", "cloudfront", "cloudwatch",
    "cognito", "default-tags", "dynamodb", "iam", "kms", "lambda", "partition", "region", "route53", "s3-bucket",
    "s3-object", "secretsmanager", "sfn", "sns", "sqs", "ssm-parameter", "wafv2", "xray",
)

_MAP_SCALARS = {"string": "string", "number": "number", "boolean": "bool"}
_COMMENT = re.compile(r"^\s*// (\w+) - computed: (true|false), optional: (true|false), required: (true|false)\s*$")
_CLASS = re.compile(r"^export class (\w+) extends cdktf\.(\w+)", re.M)
_TOHCL = re.compile(r"^export function (\w+)ToHclTerraform\(struct\?: ([^)]*)\): any \{", re.M)
_ENTRY = re.compile(
    r"(\w+): \{\s*value: (.*?),\s*isBlock: (true|false),\s*type: \"(\w+)\",\s*storageClassType: \"(\w+)\",\s*\}",
    re.S,
)


class SchemaError(Exception):
    pass


@dataclass
class Field:
    name: str
    computed: bool
    optional: bool
    required: bool
    lines: list[str] = field(default_factory=list)


@dataclass
class Module:
    """One binding module's TypeScript source, split into classes and ToHclTerraform functions."""

    source: str
    classes: dict[str, str] = field(default_factory=dict)
    tohcl: dict[str, tuple[str, str]] = field(default_factory=dict)  # function prefix -> (struct, body)

    @classmethod
    def parse(cls, source: str) -> Module:
        mod = cls(source)
        starts = [(m.start(), m.group(1)) for m in _CLASS.finditer(source)]
        for pos, name in starts:
            end = source.find("\n}\n", pos)
            mod.classes[name] = source[pos: end if end != -1 else None] + "\n"
        for m in _TOHCL.finditer(source):
            end = source.find("\n}\n", m.end())
            struct = m.group(2).split("|")[0].strip().removesuffix("OutputReference")
            mod.tohcl[m.group(1)] = (struct, source[m.end(): end])
        return mod

    def fields(self, class_name: str) -> dict[str, Field]:
        body = self.classes.get(class_name)
        if body is None:
            return {}
        out: dict[str, Field] = {}
        lines = body.splitlines()
        for i, line in enumerate(lines):
            m = _COMMENT.match(line)
            if m:
                following = []
                for nxt in lines[i + 1: i + 8]:
                    if nxt.strip().startswith("//"):
                        break  # the next field's comment: this field's lines end here
                    following.append(nxt)
                out[m.group(1)] = Field(m.group(1), m.group(2) == "true", m.group(3) == "true", m.group(4) == "true",
                                        following)
        return out

    def entries(self, body: str) -> dict[str, tuple[str, bool, str, str]]:
        return {m.group(1): (m.group(2), m.group(3) == "true", m.group(4), m.group(5)) for m in _ENTRY.finditer(body)}


def _lower_first(name: str) -> str:
    return name[0].lower() + name[1:]


class Builder:
    def __init__(self, mod: Module) -> None:
        self.mod = mod

    # -- types of computed-only fields, from their getters -----------------------------------------------------
    def _getter_type(self, f: Field) -> Any:
        text = "\n".join(f.lines)
        new = re.search(r"new (cdktf\.)?(\w+)\(this, \"\w+\"(?:, (true|false))?\)", text)
        if new:
            klass = new.group(2)
            if new.group(1):  # cdktf.StringMap, NumberMap, BooleanMap, AnyMap, StringMapList...
                return {"StringMap": ["map", "string"], "NumberMap": ["map", "number"],
                        "BooleanMap": ["map", "bool"], "AnyMap": ["map", "dynamic"],
                        "StringMapList": ["list", ["map", "string"]], "NumberMapList": ["list", ["map", "number"]],
                        "BooleanMapList": ["list", ["map", "bool"]], "AnyMapList": ["list", ["map", "dynamic"]],
                        "StringListMap": ["map", ["list", "string"]]}.get(klass, "dynamic")
            obj = ["object", self._object_attrs(self._element_class(klass))]
            if klass.endswith("OutputReference"):
                return ["list", obj]  # SDKv2 keeps a computed single nested object as a one-element list
            if klass.endswith("Map"):
                return ["map", obj]
            return ["set" if new.group(3) == "true" else "list", obj]
        ret = re.search(r"return (.*?);", text)
        expr = ret.group(1) if ret else ""
        kind = "set" if "Fn.tolist" in expr else "list"
        for getter, t in (("getStringAttribute", "string"), ("getNumberAttribute", "number"),
                          ("getBooleanAttribute", "bool"), ("getListAttribute", [kind, "string"]),
                          ("getNumberListAttribute", [kind, "number"]), ("getBooleanListAttribute", [kind, "bool"]),
                          ("getStringMapAttribute", ["map", "string"]), ("getNumberMapAttribute", ["map", "number"]),
                          ("getBooleanMapAttribute", ["map", "bool"]), ("getAnyMapAttribute", ["map", "dynamic"])):
            if getter + "(" in expr:
                return t
        return "dynamic"  # interpolationForAttribute: a value of any type

    def _element_class(self, klass: str) -> str:
        for suffix in ("List", "Map", "OutputReference"):
            if klass.endswith(suffix) and klass != suffix:
                return klass[: -len(suffix)] + "OutputReference"
        return klass

    def _object_attrs(self, class_name: str) -> dict[str, Any]:
        return {name: self._getter_type(f) for name, f in sorted(self.mod.fields(class_name).items())}

    # -- configurable entries ------------------------------------------------------------------------------------
    def _value_type(self, value: str, kind: str, storage: str) -> Any:
        base = None
        if storage in _MAP_SCALARS:
            base = _MAP_SCALARS[storage]
        else:
            m = re.fullmatch(r"(string|number|boolean)(List|Map)", storage)
            if m:
                inner = _MAP_SCALARS[m.group(1)]
                if m.group(2) == "List":
                    return [kind if kind in ("list", "set") else "list", inner]
                return ["map", inner]
            if storage in ("stringListList", "numberListList"):
                return ["list", ["list", "string" if storage.startswith("string") else "number"]]
            if storage == "stringMapList":
                return ["list", ["map", "string"]]
        if base is not None:
            return base if kind == "simple" else [kind if kind != "struct" else "list", base]
        child = self._child(value)
        if child is None:
            return "dynamic"
        obj = ["object", self._struct_type(child)]
        if kind == "struct" or kind == "simple":
            return obj
        return [kind, obj]

    def _struct_type(self, fn_prefix: str) -> dict[str, Any]:
        """An object type for a struct used as an attribute value (nested attributes of the plugin framework)."""
        block = self.block(fn_prefix)
        attrs = {name: a["type"] for name, a in block.get("attributes", {}).items()}
        for name, b in block.get("block_types", {}).items():
            inner = ["object", {n: a["type"] for n, a in b["block"].get("attributes", {}).items()}]
            attrs[name] = inner if b["nesting_mode"] == "single" else [b["nesting_mode"], inner]
        return attrs

    def _child(self, value: str) -> str | None:
        for m in re.finditer(r"(\w+)ToHclTerraform", value):
            name = m.group(1)
            if name not in {"string", "number", "boolean"} and name in self.mod.tohcl:
                return name
        return None

    def block(self, fn_prefix: str | None, class_name: str | None = None, body: str | None = None) -> dict[str, Any]:
        """The schema block of the resource (``class_name``, ``body`` of synthesizeHclAttributes) or of a struct."""
        if fn_prefix is not None:
            struct, body = self.mod.tohcl[fn_prefix]
            class_name = struct + "OutputReference"
        assert body is not None and class_name is not None
        fields = self.mod.fields(class_name)
        entries = self.mod.entries(body)
        attributes: dict[str, Any] = {}
        block_types: dict[str, Any] = {}
        for name, (value, is_block, kind, storage) in entries.items():
            f = fields.get(name) or Field(name, False, True, False)
            if is_block and f.computed:
                # a block Terraform may also compute is an attribute in the provider's schema (the SDK's
                # "attributes as blocks", e.g. aws_security_group.ingress); block syntax still works for it
                child = self._child(value)
                obj = ["object", self._struct_type(child)] if child else "dynamic"
                attributes[name] = {"type": obj if kind in ("struct", "simple") else [kind, obj], "optional": True,
                                    "computed": True}
                continue
            if is_block:
                child = self._child(value)
                inner = self.block(child) if child else {}
                text = "\n".join(f.lines)
                single = re.search(r"new \w+OutputReference\(this, \"\w+\"\)", text) is not None
                if kind == "struct":
                    mode = "single"
                elif kind == "set":
                    mode = "set"
                else:
                    mode = "list"
                entry: dict[str, Any] = {"nesting_mode": mode, "block": inner}
                if f.required and mode != "single":
                    entry["min_items"] = 1
                if single and mode != "single":
                    entry["max_items"] = 1
                block_types[name] = entry
                continue
            attr: dict[str, Any] = {"type": self._value_type(value, kind, storage)}
            if f.required:
                attr["required"] = True
            else:
                attr["optional"] = True
                if f.computed:
                    attr["computed"] = True
            attributes[name] = attr
        for name, f in fields.items():
            if name in entries:
                continue
            if f.computed and not f.optional and not f.required:
                attributes[name] = {"type": self._getter_type(f), "computed": True}
        out: dict[str, Any] = {}
        if attributes:
            out["attributes"] = dict(sorted(attributes.items()))
        if block_types:
            out["block_types"] = dict(sorted(block_types.items()))
        return out

    def top(self) -> tuple[str, str, dict[str, Any]]:
        """(kind, type name, block) of the module's resource, data source or provider."""
        for name, body in self.mod.classes.items():
            kind = re.search(r"extends cdktf\.(TerraformResource|TerraformDataSource|TerraformProvider)", body[:300])
            if not kind:
                continue
            tf_type = re.search(r'tfResourceType = "(\w+)"', body)
            synth = re.search(r"synthesizeHclAttributes\(\): \{ \[name: string\]: any \} \{(.*?)\n  \}\n", body, re.S)
            if not tf_type or not synth:
                raise SchemaError(f"class {name}: no tfResourceType or synthesizeHclAttributes")
            return kind.group(1), tf_type.group(1), self.block(None, name, synth.group(1))
        raise SchemaError("no resource, data source or provider class")


def module_sources(package_dir: Path) -> dict[str, str]:
    """Module directory name -> the TypeScript source embedded in its ``index.js`` source map."""
    out = {}
    for js in sorted((package_dir / "lib").glob("*/index.js")):
        text = js.read_text(encoding="utf-8")
        m = re.search(r"sourceMappingURL=data:application/json;base64,(\S+)", text)
        if not m:
            raise SchemaError(f"{js}: no inline source map")
        out[js.parent.name] = json.loads(base64.b64decode(m.group(1)))["sourcesContent"][0]
    return out


def _selected(provider: str, module: str, services: tuple[str, ...] | None) -> bool:
    if services is None or provider != "aws" or module == "provider":
        return True
    name = module.removeprefix("data-aws-")
    return any(name == s or name.startswith(s + "-") for s in AWS_SERVICES)


def build_schema(provider: str, package_dir: Path, services: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The provider's schema; with ``services``, only the AWS modules whose names start with one of them."""
    schema: dict[str, Any] = {"provider": {"version": 0, "block": {}}, "resource_schemas": {},
                              "data_source_schemas": {}}
    for module, source in module_sources(package_dir).items():
        if not _selected(provider, module, services):
            continue
        try:
            kind, name, block = Builder(Module.parse(source)).top()
        except SchemaError as exc:
            raise SchemaError(f"{package_dir.name}/lib/{module}: {exc}") from None
        if kind == "TerraformProvider":
            schema["provider"]["block"] = block
        elif kind == "TerraformResource":
            schema["resource_schemas"][name] = {"version": 0, "block": block}
        else:
            schema["data_source_schemas"][name] = {"version": 0, "block": block}
    for key in ("resource_schemas", "data_source_schemas"):
        schema[key] = dict(sorted(schema[key].items()))
    return schema


def _has_dynamic(block: dict[str, Any]) -> bool:
    return any("dynamic" in json.dumps(a["type"]) for a in block.get("attributes", {}).values()) or any(
        _has_dynamic(b["block"]) for b in block.get("block_types", {}).values())


def approximate(schema: dict[str, Any]) -> list[str]:
    """Make the few places the bindings could not type valid for Terraform; returns what was changed.

    cdktf types a block nested deeper than it generates (``aws_wafv2_web_acl``'s recursive ``rule.statement``) as
    ``any``: served as a dynamic attribute. Terraform refuses dynamic values inside set-nested blocks, so such a
    set block is served as a list block (same arguments, element order kept instead of ignored).
    """
    changed: list[str] = []

    def walk(block: dict[str, Any], path: str) -> None:
        for name, nested in block.get("block_types", {}).items():
            here = f"{path}.{name}"
            if nested["nesting_mode"] == "set" and _has_dynamic(nested["block"]):
                nested["nesting_mode"] = "list"
                changed.append(f"{here}: set block served as a list (it holds an untyped argument)")
            walk(nested["block"], here)
        for name, attr in block.get("attributes", {}).items():
            if attr["type"] == "dynamic":
                changed.append(f"{path}.{name}: untyped in the bindings, served as a dynamic attribute")

    for key, prefix in (("resource_schemas", ""), ("data_source_schemas", "data.")):
        for type_name, entry in schema[key].items():
            walk(entry["block"], prefix + type_name)
    return changed


def fetch_package(spec: str, into: Path) -> Path:
    """``npm pack`` the pinned package into ``into`` and unpack it; returns the package directory."""
    subprocess.run(["npm", "pack", "--silent", spec], cwd=into, check=True, stdout=subprocess.DEVNULL)
    tgz = next(into.glob("*.tgz"))
    with tarfile.open(tgz) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # Python before 3.11.4
            tar.extractall(into)
    return into / "package"


def write_schema(provider: str, schema: dict[str, Any], out_dir: Path) -> Path:
    package, pkg_version, source, version = PACKAGES[provider]
    document = {"format_version": "1.0", "provider_schemas": {source: schema}, "provider_version": version,
                "generated_from": f"{package}@{pkg_version}", "approximations": approximate(schema)}
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{provider}-{version}.json.gz"
    buf = io.BytesIO()
    # mtime=0 and no file name: the same input gives the same bytes
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "schemas")
    parser.add_argument("--package-dir", action="append", default=[], metavar="PROVIDER=DIR",
                        help="use an unpacked package instead of `npm pack` (e.g. aws=/tmp/aws/package)")
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.package_dir)
    for provider, (package, pkg_version, _source, _version) in PACKAGES.items():
        if provider in given:
            package_dir = Path(given[provider])
            schema = build_schema(provider, package_dir)
        else:
            with tempfile.TemporaryDirectory(prefix=f"tfstandin-{provider}-") as tmp:
                package_dir = fetch_package(f"{package}@{pkg_version}", Path(tmp))
                schema = build_schema(provider, package_dir)
        path = write_schema(provider, schema, args.out)
        print(f"{path}: {len(schema['resource_schemas'])} resources, {len(schema['data_source_schemas'])} data "
              f"sources, {path.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
