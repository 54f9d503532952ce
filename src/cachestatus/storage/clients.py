"""obstore clients built from the environment, as each cloud's own tools read it.

Nothing here is ever pickled: a worker process builds its own client from its own environment,
so no secret travels with a task. obstore's own retries are off (``max_retries: 0``): throttling
answers are retried by :class:`~.objects.ObjectStorage`, which counts them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtra
from .location import Location

if TYPE_CHECKING:
    from obstore.store import ObjectStore

#: What a missing extra's message tells to run.
CLOUD_EXTRA = "pip install 'cachestatus[cloud]'"


def require_cloud() -> Any:
    """The ``obstore`` module.

    Raises:
        MissingExtra: obstore is not installed (the ``cloud`` extra).
    """
    try:
        import obstore
    except ImportError:
        raise MissingExtra(
            f"reading caches in object storage or over HTTP needs obstore: {CLOUD_EXTRA}"
        ) from None
    return obstore


def build_store(location: Location) -> ObjectStore:
    """An obstore client for ``location``'s bucket (its root: keys are full keys).

    Raises:
        MissingExtra: obstore is not installed.
    """
    require_cloud()
    from obstore.store import AzureStore, GCSStore, HTTPStore, S3Store

    retry: Any = {"max_retries": 0}
    if location.is_http:
        plain: Any = {"allow_http": True} if location.scheme == "http" else {}
        return HTTPStore.from_url(
            f"{location.scheme}://{location.bucket}", client_options=plain, retry_config=retry
        )
    if location.scheme == "s3":
        endpoint = _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        config: Any = {}
        if endpoint:
            config["endpoint"] = endpoint
        region = _env("AWS_REGION", "AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        if location.anon or _env("AWS_NO_SIGN_REQUEST").upper() in ("YES", "TRUE", "1"):
            config["skip_signature"] = True
        client: Any = {"allow_http": True} if endpoint.startswith("http://") else {}
        return S3Store(location.bucket, config=config, client_options=client, retry_config=retry)
    if location.scheme == "az":
        azure: Any = _azure_config(location)
        plain_http = azure.get("use_emulator") or azure.get("endpoint", "").startswith("http://")
        client = {"allow_http": True} if plain_http else {}
        return AzureStore(location.bucket, config=azure, client_options=client, retry_config=retry)
    gcs: Any = {"skip_signature": True} if location.anon else {}
    # obstore reads GOOGLE_BASE_URL itself (a GCS-compatible endpoint); plain HTTP only there.
    client = {"allow_http": True} if _env("GOOGLE_BASE_URL").startswith("http://") else {}
    return GCSStore(location.bucket, config=gcs, client_options=client, retry_config=retry)


def _azure_config(location: Location) -> dict[str, Any]:
    """Azure settings: ``AZURE_STORAGE_CONNECTION_STRING`` parsed, then the account, key and
    SAS token variables, the account an ``abfs://`` URL names, ``--anon``.

    A connection string's ``BlobEndpoint`` is where requests go (Azurite on any port, a
    private endpoint). The emulator flag (``AZURE_STORAGE_USE_EMULATOR``,
    ``UseDevelopmentStorage=true``) stands for Azurite's default address and account, and
    only where no endpoint is named: in emulator mode obstore ignores the endpoint.
    """
    config: dict[str, Any] = {}
    parts = _connection_string(_env("AZURE_STORAGE_CONNECTION_STRING"))
    if "AccountName" in parts:
        config["account_name"] = parts["AccountName"]
    if "AccountKey" in parts:
        config["account_key"] = parts["AccountKey"]
    if "SharedAccessSignature" in parts:
        config["sas_key"] = parts["SharedAccessSignature"]
    endpoint = parts.get("BlobEndpoint", "")
    if endpoint:
        config["endpoint"] = endpoint
    for name, key in (
        ("AZURE_STORAGE_ACCOUNT_NAME", "account_name"),
        ("AZURE_STORAGE_ACCOUNT_KEY", "account_key"),
        ("AZURE_STORAGE_SAS_TOKEN", "sas_key"),
    ):
        if _env(name):
            config[key] = _env(name)
    if location.account is not None:
        config["account_name"] = location.account
    emulator = (
        _env("AZURE_STORAGE_USE_EMULATOR").lower() in ("1", "true", "yes")
        or parts.get("UseDevelopmentStorage", "").lower() == "true"
    )
    config["use_emulator"] = emulator and not endpoint  # obstore also reads the flag itself
    if location.anon:
        config["skip_signature"] = True
    return config


def _connection_string(text: str) -> dict[str, str]:
    """``Key=value;Key=value`` pairs (values may hold ``=``, as keys and tokens do)."""
    pairs = (part.partition("=") for part in text.split(";") if "=" in part)
    return {key.strip(): value.strip() for key, _, value in pairs}


def _env(*names: str) -> str:
    """The first of the environment variables ``names`` that is set and not empty."""
    for name in names:
        value = os.environ.get(name, "")
        if value:
            return value
    return ""
