"""SendGrid's ``POST /v3/mail/send`` contract, for the stand-in and the contract tests.

The request body schema comes from SendGrid's OpenAPI document (``SENDGRID_SPEC``; by
default ``../shared/sendgrid/tsg_mail_v3.json`` beside the checkout), read where it lies
and never copied into the repository; its ``$ref``s resolve within the document.  The
real API also refuses what the schema allows, and ``limits`` checks those rules.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_ENV = "SENDGRID_SPEC"
DEFAULT_SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "sendgrid" / "tsg_mail_v3.json"
SPEC_URI = "urn:sendgrid:tsg_mail_v3"
OPERATION = ("/v3/mail/send", "post")
#: The real API's limits (SendGrid's "Mail Send limitations").
MAX_PERSONALIZATIONS = MAX_RECIPIENTS = 1000
MAX_SCHEDULE_SECONDS = 72 * 3600
MAX_BODY_BYTES = 30 * 1024 * 1024
#: Bytes of a personalization's substitutions, and of its custom_args.
MAX_SUBSTITUTIONS_BYTES = MAX_CUSTOM_ARGS_BYTES = 10_000
HELP = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/limitations"


class ContractMissing(FileNotFoundError):
    """The contract file is not where ``SENDGRID_SPEC`` (or the default) says."""


def spec_path() -> Path:
    return Path(os.environ.get(SPEC_ENV) or DEFAULT_SPEC)


def problem(message: str, field: str | None = None, help_url: str | None = None) -> dict[str, Any]:
    """One entry of SendGrid's ``{"errors": [...]}`` answer."""
    return {"message": message, "field": field, "help": help_url}


@functools.cache
def _validator(path: Path) -> Draft202012Validator:
    if not path.is_file():
        raise ContractMissing(f"SendGrid's contract is missing: {path} (set {SPEC_ENV} to its path)")
    document = json.loads(path.read_text(encoding="utf-8"))
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(document))
    # The operation names its body by reference (#/components/requestBodies/…); the schema
    # under it refers on to #/components/schemas/…, resolved in the same document.
    body = document["paths"][OPERATION[0]][OPERATION[1]]["requestBody"]
    pointer = body["$ref"].removeprefix("#") if "$ref" in body else "/paths/~1v3~1mail~1send/post/requestBody"
    pointer += "/content/application~1json/schema"
    schema = {"$ref": f"{SPEC_URI}#{pointer}"}
    registry.resolver().lookup(schema["$ref"])  # fails now, not on the first request, if it moved
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validator() -> Draft202012Validator:
    """The compiled request-body schema; raises ``ContractMissing`` without the file."""
    return _validator(spec_path().resolve())


def _dotted(path: Any) -> str | None:
    return ".".join(str(part) for part in path) or None


def schema_problems(body: Any) -> list[dict[str, Any]]:
    """Every way ``body`` breaks the contract's schema, SendGrid-style."""
    return [problem(error.message, _dotted(error.absolute_path)) for error in validator().iter_errors(body)]


def _recipients(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for field, address in located_recipients(body):
        yield field.rpartition(".")[0], address


def located_recipients(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every address the request sends to, with where it stands (``personalizations.3.to.0``)."""
    for index, personalization in enumerate(body.get("personalizations") or []):
        for kind in ("to", "cc", "bcc"):
            for position, person in enumerate(personalization.get(kind) or []):
                yield f"personalizations.{index}.{kind}.{position}", str(person.get("email", ""))


def recipients(body: dict[str, Any]) -> list[str]:
    """Every address the request sends to (to, cc and bcc of every personalization)."""
    return [address for _, address in _recipients(body)]


def limits(body: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """What the real API refuses although the schema allows it (call on a schema-valid body)."""
    found: list[dict[str, Any]] = []
    personalizations = body["personalizations"]
    if not personalizations:
        found.append(
            problem("The personalizations field must have at least one personalization.", "personalizations", HELP)
        )
    if len(personalizations) > MAX_PERSONALIZATIONS:
        found.append(
            problem(
                f"The personalizations field may not have more than {MAX_PERSONALIZATIONS} items.",
                "personalizations",
                HELP,
            )
        )
    seen: dict[str, str] = {}
    for field, address in _recipients(body):
        key = address.casefold()
        if key in seen:
            found.append(
                problem(
                    "Each email address in the personalization block should be unique between to, cc, and bcc. "
                    f"We found the first duplicate instance of [{address}] in the {field} field.",
                    field,
                    HELP,
                )
            )
            break
        seen[key] = field
    if len(recipients(body)) > MAX_RECIPIENTS:
        found.append(
            problem(f"The total number of recipients must be no more than {MAX_RECIPIENTS}.", "personalizations", HELP)
        )
    for index, personalization in enumerate(personalizations):
        if not personalization["to"]:
            found.append(
                problem(
                    "The to array is required for all personalization objects, and must have at "
                    "least one email object.",
                    f"personalizations.{index}.to",
                    HELP,
                )
            )
        found += _strings(personalization.get("custom_args"), f"personalizations.{index}.custom_args")
        found += _strings(personalization.get("headers"), f"personalizations.{index}.headers")
        found += _size(personalization.get("substitutions"), f"personalizations.{index}.substitutions",
                       MAX_SUBSTITUTIONS_BYTES)  # fmt: skip
        found += _size(personalization.get("custom_args"), f"personalizations.{index}.custom_args",
                       MAX_CUSTOM_ARGS_BYTES)  # fmt: skip
        found += _schedule(personalization.get("send_at"), f"personalizations.{index}.send_at", now)
    found += _schedule(body.get("send_at"), "send_at", now)
    found += _strings(body.get("headers"), "headers")
    if not body.get("template_id"):
        if not body.get("content"):
            found.append(
                problem("Unless a valid template_id is provided, the content parameter is required.", "content", HELP)
            )
        if not body.get("subject") and not all(p.get("subject") for p in personalizations):
            found.append(
                problem(
                    "The subject is required. You can get around this requirement if you use a "
                    "template with a subject defined.",
                    "subject",
                    HELP,
                )
            )
    return found


def _schedule(send_at: int | None, field: str, now: float) -> list[dict[str, Any]]:
    if send_at is not None and send_at > now + MAX_SCHEDULE_SECONDS:
        return [problem("The send_at parameter may not be more than 72 hours in the future.", field, HELP)]
    return []


def _size(mapping: dict[str, Any] | None, field: str, limit: int) -> list[dict[str, Any]]:
    """Names and values of ``mapping`` together may not exceed ``limit`` bytes."""
    size = sum(len(str(name).encode()) + len(str(value).encode()) for name, value in (mapping or {}).items())
    if size > limit:
        return [problem(f"The total size of {field.rpartition('.')[2]} may not exceed {limit} bytes.", field, HELP)]
    return []


def _strings(mapping: dict[str, Any] | None, field: str) -> list[dict[str, Any]]:
    """Header and custom_args values must be strings (the schema only says "object")."""
    return [
        problem(f"Invalid type. Expected: string, given: {type(value).__name__}.", f"{field}.{name}", HELP)
        for name, value in (mapping or {}).items()
        if not isinstance(value, str)
    ]
