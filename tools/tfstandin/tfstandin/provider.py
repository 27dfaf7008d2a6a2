"""An offline stand-in for a Terraform provider: the real schema, served over plugin protocol 6, no API behind it.

Terraform starts it as it starts any provider (go-plugin: magic cookie, handshake line on stdout, gRPC over a
unix socket with the certificate it prints). It answers:

- ``GetProviderSchema``/``GetMetadata``: the schema rebuilt from the cdktf bindings (:mod:`tfstandin.schema_gen`),
  so Terraform itself checks argument names, required arguments, types, block nesting and attribute references
  exactly as with the real provider;
- ``ValidateResourceConfig``/``ValidateDataResourceConfig``: what the SDK refuses beyond the schema: a value for
  a computed-only attribute;
- ``PlanResourceChange``: creates and updates with every computed value the configuration leaves open unknown
  (``(known after apply)``), as a real plan shows before the API answers; deletes as deletes;
- ``ReadDataSource``: ``aws_iam_policy_document`` and ``archive_file`` computed as the real providers compute them
  (they never call an API), ``aws_region``/``aws_partition`` from the configuration; every other data source
  answers its arguments with placeholder values (``standin-<name>``, ``arn:aws:standin:...``), because there is
  no account to read;
- ``ApplyResourceChange``: refused, with an error that says why; ``ReadResource`` returns the state it is given.

It cannot see what the real provider checks in its own code: enum values, patterns, ranges, conflicting or
required-together arguments, IAM policy grammar, and anything the API would answer.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
import zipfile
from concurrent import futures
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
PROVIDERS = {"aws": "aws-5.100.0.json.gz", "archive": "archive-2.7.1.json.gz"}
NESTING = {"single": 1, "list": 2, "set": 3, "map": 4, "group": 5}


def load_schema(provider: str) -> dict[str, Any]:
    with gzip.open(SCHEMA_DIR / PROVIDERS[provider], "rt", encoding="utf-8") as fh:
        document = json.load(fh)
    (entry,) = document["provider_schemas"].values()
    return entry


# -- values ----------------------------------------------------------------------------------------------------
class _Unknown:
    """cty's unknown value on the wire (msgpack extension 0)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "Unknown"


UNKNOWN = _Unknown()


def _decode(pb_value: Any) -> Any:
    import msgpack

    if pb_value.msgpack:
        return msgpack.unpackb(
            pb_value.msgpack, raw=False, strict_map_key=False,
            ext_hook=lambda code, data: UNKNOWN if code == 0 else msgpack.ExtType(code, data),
        )
    if pb_value.json:
        return json.loads(pb_value.json)
    return None


def _encode(value: Any) -> Any:
    import msgpack
    from tf.gen import tfplugin_pb2 as pb

    return pb.DynamicValue(msgpack=msgpack.packb(
        value, use_bin_type=True, default=lambda o: msgpack.ExtType(0, b"\x00") if o is UNKNOWN else o))


def _fill_computed(block: dict[str, Any], config: Any, prior: Any, fill) -> Any:
    """``config`` with each computed attribute it leaves null taken from ``prior`` or from ``fill(name, type)``."""
    if config is None or config is UNKNOWN:
        return config
    out = dict(config)
    for name, attr in block.get("attributes", {}).items():
        if attr.get("computed") and out.get(name) is None:
            old = prior.get(name) if isinstance(prior, dict) else None
            out[name] = old if old is not None else fill(name, attr["type"])
    for name, nested in block.get("block_types", {}).items():
        value = out.get(name)
        inner = nested["block"]
        if value is None or value is UNKNOWN:
            continue
        old = prior.get(name) if isinstance(prior, dict) else None
        if _is_dynamic_wrapped(value):
            # a list block holding an untyped argument travels as a tuple of cty's dynamic encoding:
            # [type JSON, value]; fill inside it and keep the wrapping
            olds = old[1] if _is_dynamic_wrapped(old) else None
            out[name] = [value[0], [_fill_computed(inner, v, olds[i] if olds and i < len(olds) else None, fill)
                                    for i, v in enumerate(value[1])]]
            continue
        if nested["nesting_mode"] in ("single", "group"):
            out[name] = _fill_computed(inner, value, old, fill)
        elif nested["nesting_mode"] == "map":
            out[name] = {k: _fill_computed(inner, v, (old or {}).get(k), fill) for k, v in value.items()}
        else:
            olds = old if isinstance(old, list) and nested["nesting_mode"] == "list" else []
            out[name] = [_fill_computed(inner, v, olds[i] if i < len(olds) else None, fill)
                         for i, v in enumerate(value)]
    return out


def _is_dynamic_wrapped(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], bytes)


def _computed_only_set(block: dict[str, Any], config: Any, path: list[Any]) -> list[list[Any]]:
    """Paths of computed-only attributes that the configuration gives a value."""
    found: list[list[Any]] = []
    if not isinstance(config, dict):
        return found
    for name, attr in block.get("attributes", {}).items():
        if attr.get("computed") and not attr.get("optional") and not attr.get("required") \
                and config.get(name) is not None:
            found.append([*path, name])
    for name, nested in block.get("block_types", {}).items():
        value = config.get(name)
        if value is None or value is UNKNOWN:
            continue
        if _is_dynamic_wrapped(value):
            value = value[1]
        items = value.items() if isinstance(value, dict) and nested["nesting_mode"] == "map" else (
            [(None, value)] if nested["nesting_mode"] in ("single", "group") else enumerate(value))
        for key, item in items:
            found += _computed_only_set(nested["block"], item, [*path, name] + ([key] if key is not None else []))
    return found


def placeholder(type_name: str, region: str, name: str, cty_type: Any) -> Any:
    """A known value of ``cty_type`` for a data source attribute the stand-in cannot read."""
    if cty_type == "string":
        if name == "arn" or name.endswith("_arn"):
            return f"arn:aws:standin:{region}:000000000000:{type_name}/{name}"
        return f"standin-{name}"
    if cty_type == "number":
        return 0
    if cty_type == "bool":
        return False
    if cty_type == "dynamic":
        return None
    kind, inner = cty_type[0], cty_type[1]
    if kind in ("list", "set"):
        element = placeholder(type_name, region, name.removesuffix("s"), inner)
        return [element] if not isinstance(inner, list) else []
    if kind == "map":
        return {}
    if kind == "object":
        return {k: placeholder(type_name, region, k, t) for k, t in inner.items()}
    if kind == "tuple":
        return [placeholder(type_name, region, name, t) for t in inner]
    return None


# -- data sources the real providers compute locally -------------------------------------------------------------
def _policy_document(config: dict[str, Any]) -> dict[str, Any]:
    statements = []
    for st in config.get("statement") or []:
        out: dict[str, Any] = {}
        if st.get("sid"):
            out["Sid"] = st["sid"]
        out["Effect"] = st.get("effect") or "Allow"
        for key, field in (("Action", "actions"), ("NotAction", "not_actions"), ("Resource", "resources"),
                           ("NotResource", "not_resources")):
            values = sorted(st.get(field) or [])
            if values:
                out[key] = values[0] if len(values) == 1 else values
        for key, field in (("Principal", "principals"), ("NotPrincipal", "not_principals")):
            principals: dict[str, Any] = {}
            everyone = False
            for p in st.get(field) or []:
                ids = sorted(p.get("identifiers") or [])
                if p["type"] == "*" and ids == ["*"]:
                    everyone = True  # the provider writes "Principal": "*"
                    continue
                principals[p["type"]] = ids[0] if len(ids) == 1 else ids
            if everyone and not principals:
                out[key] = "*"
            elif principals:
                out[key] = principals
        conditions: dict[str, Any] = {}
        for c in st.get("condition") or []:
            values = c.get("values") or []
            conditions.setdefault(c["test"], {})[c["variable"]] = values[0] if len(values) == 1 else values
        if conditions:
            out["Condition"] = conditions
        statements.append(out)
    policy: dict[str, Any] = {"Version": config.get("version") or "2012-10-17"}
    if config.get("policy_id"):
        policy["Id"] = config["policy_id"]
    policy["Statement"] = statements
    return policy


def _archive_file(config: dict[str, Any]) -> dict[str, Any]:
    """Write the zip the configuration describes (``source`` blocks, ``source_content``, a file or a directory)."""
    out_path = Path(config["output_path"])
    entries: list[tuple[str, bytes]] = []
    for src in config.get("source") or []:
        entries.append((src["filename"], src["content"].encode()))
    if config.get("source_content") is not None:
        entries.append((config["source_content_filename"], config["source_content"].encode()))
    if config.get("source_file"):
        path = Path(config["source_file"])
        entries.append((path.name, path.read_bytes()))
    if config.get("source_dir"):
        root = Path(config["source_dir"])
        entries += [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(2049, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = buf.getvalue()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(data)
    sha1 = hashlib.sha1(data).hexdigest()
    return {
        "id": sha1, "output_sha": sha1, "output_size": len(data),
        "output_md5": hashlib.md5(data).hexdigest(),
        "output_sha256": hashlib.sha256(data).hexdigest(),
        "output_base64sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "output_sha512": hashlib.sha512(data).hexdigest(),
        "output_base64sha512": base64.b64encode(hashlib.sha512(data).digest()).decode(),
    }


# -- the gRPC service --------------------------------------------------------------------------------------------
def _pb_block(block: dict[str, Any]) -> Any:
    from tf.gen import tfplugin_pb2 as pb

    attrs = [
        pb.Schema.Attribute(name=name, type=json.dumps(a["type"]).encode(), required=bool(a.get("required")),
                            optional=bool(a.get("optional")), computed=bool(a.get("computed")),
                            sensitive=bool(a.get("sensitive")))
        for name, a in block.get("attributes", {}).items()
    ]
    blocks = [
        pb.Schema.NestedBlock(type_name=name, block=_pb_block(b["block"]), nesting=NESTING[b["nesting_mode"]],
                              min_items=b.get("min_items", 0), max_items=b.get("max_items", 0))
        for name, b in block.get("block_types", {}).items()
    ]
    return pb.Schema.Block(attributes=attrs, block_types=blocks)


def _diag(summary: str, detail: str = "", path: list[Any] | None = None, error: bool = True) -> Any:
    from tf.gen import tfplugin_pb2 as pb

    kwargs: dict[str, Any] = {"severity": pb.Diagnostic.ERROR if error else pb.Diagnostic.WARNING,
                              "summary": summary, "detail": detail}
    if path:
        kwargs["attribute"] = pb.AttributePath(steps=[
            pb.AttributePath.Step(element_key_int=s) if isinstance(s, int) else pb.AttributePath.Step(attribute_name=s)
            for s in path
        ])
    return pb.Diagnostic(**kwargs)


class StandinProvider:
    """The provider's behaviour on plain Python values; :func:`serve` puts it behind gRPC."""

    def __init__(self, name: str, schema: dict[str, Any]) -> None:
        self.name = name
        self.schema = schema
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def block(self, type_name: str, data: bool = False) -> dict[str, Any]:
        table = self.schema["data_source_schemas" if data else "resource_schemas"]
        return table[type_name]["block"]

    def configure(self, config: dict[str, Any] | None) -> None:
        if config and isinstance(config.get("region"), str):
            self.region = config["region"]

    def validate(self, type_name: str, config: Any, data: bool = False) -> list[tuple[str, str, list[Any]]]:
        problems = []
        for path in _computed_only_set(self.block(type_name, data), config, []):
            # the SDK's words (helper/schema), so messages read the same with the stand-in and the real provider
            problems.append((
                "Value for unconfigurable attribute",
                f"Can't configure a value for {json.dumps('.'.join(str(p) for p in path))}: its value will be decided "
                "automatically based on the result of applying this configuration.",
                path,
            ))
        return problems

    def plan(self, type_name: str, prior: Any, proposed: Any, config: Any) -> Any:
        if proposed is None:
            return None  # destroy
        block = self.block(type_name)
        if prior is None:
            return _fill_computed(block, config, None, lambda _n, _t: UNKNOWN)
        return _fill_computed(block, config, prior, lambda _n, _t: UNKNOWN)

    def read_data(self, type_name: str, config: dict[str, Any]) -> dict[str, Any]:
        block = self.block(type_name, data=True)
        known: dict[str, Any] = {}
        if type_name == "aws_iam_policy_document":
            policy = _policy_document(config)
            known = {"json": json.dumps(policy, indent=2), "minified_json": json.dumps(policy, separators=(",", ":")),
                     "id": hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:10]}
        elif type_name == "archive_file":
            known = _archive_file(config)
        elif type_name == "aws_region":
            name = config.get("name") or self.region
            known = {"name": name, "id": name, "region": name, "endpoint": f"{name}.amazonaws.com",
                     "description": name}
        elif type_name == "aws_partition":
            known = {"partition": "aws", "id": "aws", "dns_suffix": "amazonaws.com",
                     "reverse_dns_prefix": "com.amazonaws"}
        return _fill_computed(block, config, known, lambda n, t: placeholder(type_name, self.region, n, t))


def serve(name: str) -> None:
    import grpc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from tf.gen import grpc_controller_pb2 as controller_pb
    from tf.gen import grpc_controller_pb2_grpc as controller_rpc
    from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
    from tf.gen import tfplugin_pb2 as pb
    from tf.gen import tfplugin_pb2_grpc as rpc

    if os.environ.get("TF_PLUGIN_MAGIC_COOKIE") != "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2":
        print("This is an offline stand-in for a Terraform provider: terraform starts it, not you.", file=sys.stderr)
        sys.exit(1)

    schema = load_schema(name)
    standin = StandinProvider(name, schema)
    pb_schema: dict[str, Any] = {}
    stop = {"stopped": False}

    def schema_response() -> Any:
        if not pb_schema:
            pb_schema["r"] = pb.GetProviderSchema.Response(
                provider=pb.Schema(version=0, block=_pb_block(schema["provider"]["block"])),
                resource_schemas={k: pb.Schema(version=v.get("version", 0), block=_pb_block(v["block"]))
                                  for k, v in schema["resource_schemas"].items()},
                data_source_schemas={k: pb.Schema(version=v.get("version", 0), block=_pb_block(v["block"]))
                                     for k, v in schema["data_source_schemas"].items()},
                server_capabilities=pb.ServerCapabilities(plan_destroy=True),
            )
        return pb_schema["r"]

    class Servicer(rpc.ProviderServicer):
        def GetMetadata(self, request, context):
            return pb.GetMetadata.Response(
                server_capabilities=pb.ServerCapabilities(plan_destroy=True),
                resources=[pb.GetMetadata.ResourceMetadata(type_name=t) for t in schema["resource_schemas"]],
                data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=t) for t in schema["data_source_schemas"]],
            )

        def GetProviderSchema(self, request, context):
            return schema_response()

        def ValidateProviderConfig(self, request, context):
            return pb.ValidateProviderConfig.Response()

        def ValidateResourceConfig(self, request, context):
            problems = standin.validate(request.type_name, _decode(request.config))
            return pb.ValidateResourceConfig.Response(diagnostics=[_diag(s, d, p) for s, d, p in problems])

        def ValidateDataResourceConfig(self, request, context):
            problems = standin.validate(request.type_name, _decode(request.config), data=True)
            return pb.ValidateDataResourceConfig.Response(diagnostics=[_diag(s, d, p) for s, d, p in problems])

        def UpgradeResourceState(self, request, context):
            raw = json.loads(request.raw_state.json) if request.raw_state.json else None
            return pb.UpgradeResourceState.Response(upgraded_state=_encode(raw))

        def ConfigureProvider(self, request, context):
            standin.configure(_decode(request.config))
            return pb.ConfigureProvider.Response()

        def ReadResource(self, request, context):
            return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

        def PlanResourceChange(self, request, context):
            try:
                planned = standin.plan(request.type_name, _decode(request.prior_state),
                                       _decode(request.proposed_new_state), _decode(request.config))
            except Exception as exc:  # a stand-in's own failure is a diagnostic, not a broken connection
                return pb.PlanResourceChange.Response(diagnostics=[_diag(
                    f"The offline stand-in could not plan {request.type_name}",
                    f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")])
            return pb.PlanResourceChange.Response(planned_state=_encode(planned))

        def ApplyResourceChange(self, request, context):
            return pb.ApplyResourceChange.Response(diagnostics=[_diag(
                f"The offline stand-in for the {name} provider cannot apply",
                "It serves the provider's schema for init, validate, plan and terraform test, and has no API "
                "behind it. Apply with the real provider (registry access, no stand-in CLI configuration).",
            )])

        def ImportResourceState(self, request, context):
            return pb.ImportResourceState.Response(diagnostics=[_diag(
                f"The offline stand-in for the {name} provider cannot import", "It has no API to read from.")])

        def ReadDataSource(self, request, context):
            try:
                state = standin.read_data(request.type_name, _decode(request.config))
            except (OSError, KeyError, TypeError) as exc:
                return pb.ReadDataSource.Response(diagnostics=[_diag(f"Cannot read {request.type_name}", str(exc))])
            return pb.ReadDataSource.Response(state=_encode(state))

        def GetFunctions(self, request, context):
            return pb.GetFunctions.Response()

        def StopProvider(self, request, context):
            return pb.StopProvider.Response()

    class Controller(controller_rpc.GRPCControllerServicer):
        def Shutdown(self, request, context):
            stop["stopped"] = True
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):
        def StreamStdio(self, request, context):
            while not stop["stopped"] and context.is_active():
                time.sleep(0.2)
            return
            yield

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = __import__("datetime").datetime.now(__import__("datetime").UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - __import__("datetime").timedelta(minutes=1))
        .not_valid_after(now + __import__("datetime").timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_ProviderServicer_to_server(Servicer(), server)
    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    with tempfile.TemporaryDirectory(prefix="tfstandin-") as tmp:
        sock = f"{tmp}/plugin.sock"
        server.add_secure_port(f"unix://{sock}", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
        server.start()
        der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode().rstrip("=")
        sys.stdout.write(f"1|6|unix|{sock}|grpc|{der}\n")
        sys.stdout.flush()
        try:
            while not stop["stopped"]:
                server.wait_for_termination(0.1)
        except KeyboardInterrupt:
            pass
        server.stop(0)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or args[0] not in PROVIDERS:
        print(f"usage: python -m tfstandin.provider {{{','.join(PROVIDERS)}}}", file=sys.stderr)
        return 2
    serve(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
