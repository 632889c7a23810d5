"""Documents -> Arrow: contract B typing, JSON columns, rejects, type changes."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from flows.lakehouse.errors import SchemaEvolutionError
from flows.lakehouse.schema import DocumentConverter, Kind, column_name, new_table_schema
from flows.source.ids import IdType

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def captured_docs(name: str, store: str = "payload-api") -> list[dict]:
    return json.loads((FIXTURES / store / name).read_text())["docs"]


def test_column_names_follow_dlt_snake_case() -> None:
    assert column_name("customerEmail") == "customer_email"
    assert column_name("priceInUSD") == "price_in_usd"
    assert column_name("_variantOptions_options_order") == "_variant_options_options_order"
    assert column_name("_status") == "_status"


def test_orders_are_typed_per_contract() -> None:
    docs = captured_docs("orders.depth0.limit2.json")
    page = DocumentConverter.for_collection("orders").convert(docs, "load-1", 0)
    table = page.data
    assert page.rejected == []
    assert str(table.schema.field("id").type) == "int64"
    assert str(table.schema.field("updated_at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("amount").type) == "int64"
    assert str(table.schema.field("customer").type) == "int64"
    row = table.slice(0, 1).to_pylist()[0]
    assert row["id"] == 3000
    assert row["customer_email"] == "aiden.garcia@example.com"
    assert row["updated_at"].isoformat() == "2026-11-21T21:24:05.574000+00:00"
    # Nested values: compact JSON with Payload's own keys, identical to the source value.
    assert row["items"].startswith('[{"id":"6b021cec6d01e739f71d8a4e","product":147,')
    assert orjson.loads(row["items"]) == docs[0]["items"]
    assert orjson.loads(row["shipping_address"]) == docs[0]["shippingAddress"]
    assert row["_load_id"] == "load-1"


def test_every_known_column_exists_even_if_absent() -> None:
    docs = [{"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z"}]
    table = DocumentConverter.for_collection("products").convert(docs, "l", 0).data
    for column in ("deleted_at", "price_in_usd", "enable_variants", "_status", "variant_types"):
        assert column in table.column_names
    assert table.column("enable_variants").type.equals(__import__("pyarrow").bool_())


def test_bad_documents_are_rejected_with_reasons_not_dropped() -> None:
    docs = [
        {"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z", "amount": 100},
        {"updatedAt": "2026-01-01T00:00:00.000Z", "amount": 5},  # no id
        {"id": 3, "updatedAt": "2026-01-01T00:00:00.000Z", "createdAt": "yesterday"},
        {"id": 4, "updatedAt": "2026-01-01T00:00:00.000Z", "amount": "12,50"},
        "not an object",
    ]
    page = DocumentConverter.for_collection("orders").convert(docs, "l", 0)
    assert page.data.column("id").to_pylist() == [1]
    reasons = {r.document_id: r.reason for r in page.rejected if r.document_id}
    assert len(page.rejected) == 4
    no_id = [r.reason for r in page.rejected if r.document_id is None]
    assert sorted(no_id) == ["missing or non-integer id", "not a JSON object"]
    assert "unparsable timestamp" in reasons["3"]
    assert "unparsable number" in reasons["4"]
    assert orjson.loads(next(r.document for r in page.rejected if r.document_id == "4"))["id"] == 4


def test_a_fraction_in_a_contract_integer_rejects_only_that_document() -> None:
    docs = [
        {"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z", "amount": 12.5},
        {"id": 2, "updatedAt": "2026-01-01T00:00:00.000Z", "amount": 1250},
    ]
    page = DocumentConverter.for_collection("orders").convert(docs, "l", 0)
    assert page.data.column("id").to_pylist() == [2]
    assert [(r.document_id, r.reason) for r in page.rejected] == [
        ("1", "amount: fraction in an integer field 12.5")
    ]
    assert page.rejected[0].cause == "amount: fraction in an integer field"


def test_a_fraction_in_a_legacy_long_column_is_a_type_change() -> None:
    # A table typed by an older version (a new number field became `long`): the writer retypes
    # it on a full refresh (the error says so); nothing is silently dropped.
    docs = [{"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z", "rating": 4.5}]
    converter = DocumentConverter.for_collection("orders", {"rating": Kind.LONG})
    with pytest.raises(SchemaEvolutionError) as error:
        converter.convert(docs, "l", 0)
    assert error.value.collection == "orders"
    assert error.value.column == "rating"
    assert (error.value.current, error.value.incoming) == ("long", "double")
    assert not error.value.contract and "--full-refresh" in str(error.value)


def test_a_numeric_string_in_a_number_column_is_a_type_change() -> None:
    docs = [{"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z", "amount": "1250"}]
    with pytest.raises(SchemaEvolutionError) as error:
        DocumentConverter.for_collection("orders").convert(docs, "l", 0)
    assert (error.value.column, error.value.current, error.value.incoming) == (
        "amount",
        "long",
        "string",
    )


def test_integral_floats_are_accepted_as_long() -> None:
    docs = [{"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z", "amount": 1200.0}]
    page = DocumentConverter.for_collection("orders").convert(docs, "l", 0)
    assert page.data.column("amount").to_pylist() == [1200]


def test_new_fields_become_typed_columns_all_null_ones_wait() -> None:
    converter = DocumentConverter.for_collection("categories")
    docs = [
        {
            "id": 1,
            "updatedAt": "2026-01-01T00:00:00.000Z",
            "featuredAt": "2026-02-01T00:00:00.000Z",
            "rank": 3,
            "score": 1.5,
            "meta": {"seoTitle": "x"},
            "alwaysNull": None,
        }
    ]
    table = converter.convert(docs, "l", 0).data
    kinds = dict(converter.iceberg_fields())
    assert kinds["featured_at"] is Kind.TIMESTAMP
    assert kinds["rank"] is Kind.DOUBLE  # a whole JSON number is still a JSON number
    assert kinds["score"] is Kind.DOUBLE
    assert kinds["meta"] is Kind.JSON
    assert "always_null" not in table.column_names
    assert table.column("meta").to_pylist() == ['{"seoTitle":"x"}']


def test_new_table_schema_has_required_identifier_id() -> None:
    schema = new_table_schema([("title", Kind.STRING), ("id", Kind.LONG)])
    assert schema.find_field("id").required
    assert schema.identifier_field_names() == {"id"}


def test_string_ids_type_id_and_relationship_columns_as_strings() -> None:
    docs = captured_docs("orders.depth0.limit2.json", store="payload-api-postgres-uuid")
    converter = DocumentConverter.for_collection("orders", id_type=IdType.UUID)
    page = converter.convert(docs, "l", 0)
    assert page.rejected == []
    assert page.data.column("id").to_pylist() == [d["id"] for d in docs]
    assert str(page.data.schema.field("customer").type) == "large_string"
    assert str(page.data.schema.field("amount").type) == "int64"
    # Integer ids in a UUID store (or the other way round) are rejected, by the store's type.
    page = converter.convert(captured_docs("orders.depth0.limit2.json"), "l", 0)
    reasons = {r.reason for r in page.rejected}
    assert reasons == {"missing id or not a UUID (lowercase 8-4-4-4-12 hex)"}
    objectid = {"id": "66f1c2a4b3e9d01234abcdef", "updatedAt": "2026-01-01T00:00:00.000Z"}
    page = DocumentConverter.for_collection("orders", id_type=IdType.OBJECTID).convert(
        [objectid, {**objectid, "id": "66F1C2A4B3E9D01234ABCDEF"}], "l", 0
    )
    assert page.data.column("id").to_pylist() == [objectid["id"]]
    assert len(page.rejected) == 1
