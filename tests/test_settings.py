from __future__ import annotations

import pytest

from flows.settings import ALL_COLLECTIONS, ConfigError, load_settings


def test_defaults_are_the_embedded_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYLOAD_CMS_URL", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.uses_demo_api
    assert settings.payload_collections == list(ALL_COLLECTIONS)
    assert settings.iceberg_namespace == "ecommerce"
    assert settings.payload_depth == 0


def test_collections_parse_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLOAD_COLLECTIONS", "orders, variantTypes")
    assert load_settings(_env_file=None).payload_collections == ["orders", "variantTypes"]


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLOAD_PAGE_SIZE", "lots")
    with pytest.raises(ConfigError, match="PAYLOAD_PAGE_SIZE"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("depth", ["1", "2"])
def test_a_populated_relationship_depth_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, depth: str
) -> None:
    """depth > 0 turns relationship ids into objects the raw id columns cannot hold: no such
    setting may exist silently, it fails at start naming the variable."""
    monkeypatch.setenv("PAYLOAD_DEPTH", depth)
    with pytest.raises(ConfigError, match="PAYLOAD_DEPTH"):
        load_settings(_env_file=None)
    monkeypatch.setenv("PAYLOAD_DEPTH", "0")
    assert load_settings(_env_file=None).payload_depth == 0


def test_unknown_collection_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLOAD_COLLECTIONS", "orders,invoices")
    with pytest.raises(ConfigError, match="invoices"):
        load_settings(_env_file=None)


def test_secrets_never_appear_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "s3cr3t-value")
    with pytest.raises(ConfigError) as error:
        load_settings(_env_file=None)  # secret without client id
    assert "s3cr3t-value" not in str(error.value)
    monkeypatch.setenv("OIDC_CLIENT_ID", "pipeline")
    settings = load_settings(_env_file=None)
    assert "s3cr3t-value" not in repr(settings)
    assert settings.oidc_client_secret is not None
    assert settings.oidc_client_secret.get_secret_value() == "s3cr3t-value"


def test_rest_catalog_requires_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEBERG_CATALOG_TYPE", "rest")
    with pytest.raises(ConfigError, match="ICEBERG_CATALOG_URL"):
        load_settings(_env_file=None)
