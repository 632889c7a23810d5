"""Settings of a flow run, completed from Prefect blocks where the user keeps secrets there.

With AWS_CREDENTIALS_BLOCK set and no S3_ACCESS_KEY_ID in the environment, the warehouse's S3
keys (and region and endpoint, when the block has them) come from that prefect-aws
`AwsCredentials` block, so workers need no S3 secret in their environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import SecretStr

from flows.settings import ConfigError, Settings, load_settings


@lru_cache(maxsize=8)
def _aws_credentials(block_name: str) -> dict[str, Any]:
    from prefect_aws import AwsCredentials

    try:
        # Called from sync flow/task code: `load` runs synchronously there.
        block: AwsCredentials = AwsCredentials.load(block_name)  # type: ignore[assignment]
    except ValueError as error:
        raise ConfigError(
            f"AWS_CREDENTIALS_BLOCK: no prefect-aws AwsCredentials block named {block_name!r} on "
            "the Prefect server (create it in the UI or with AwsCredentials(...).save(name))"
        ) from error
    values: dict[str, Any] = {}
    if block.aws_access_key_id and block.aws_secret_access_key is not None:
        values["s3_access_key_id"] = SecretStr(block.aws_access_key_id)
        values["s3_secret_access_key"] = block.aws_secret_access_key
    if block.region_name:
        values["s3_region"] = block.region_name
    endpoint = block.aws_client_parameters.endpoint_url
    if endpoint:
        values["s3_endpoint"] = str(endpoint)
    return values


def with_block_credentials(settings: Settings) -> Settings:
    """`settings` with the S3 keys of AWS_CREDENTIALS_BLOCK when the environment has none."""
    if not settings.aws_credentials_block or settings.s3_access_key_id is not None:
        return settings
    values = _aws_credentials(settings.aws_credentials_block)
    if settings.s3_endpoint:  # an explicit S3_ENDPOINT wins over the block's
        values = {k: v for k, v in values.items() if k != "s3_endpoint"}
    return settings.model_copy(update=values)


def run_settings(**overrides: Any) -> Settings:
    """The typed settings for code running in a flow or task: env/.env plus blocks."""
    return with_block_credentials(load_settings(**overrides))
