"""Registered SAML service providers: per-SP configuration, the SP model, the registry.

A service provider is its **metadata** (entity id, AssertionConsumerService endpoints,
signing and encryption certificates, ``AuthnRequestsSigned``, ``WantAssertionsSigned``; parsed
by :func:`.metadata.parse_sp_metadata`) plus our **configuration** for it
(:class:`ServiceProviderConfig`, loaded from the ``saml:`` section of the config file by the
settings layer). The registry is built once at start, refuses duplicate entity ids and names
the file of any malformed one (``file: reason``).

ACS resolution is exact: a requested URL must equal one of the metadata's ACS ``Location``s
byte for byte (no prefix, case or trailing-slash leniency); an index must exist; neither given
means the ``isDefault`` endpoint (else the first, else lowest index) — SAML metadata §2.2.3.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .constants import BINDING_HTTP_POST, NAMEID_EMAIL, NAMEID_FORMATS, SUPPORTED_ACS_BINDINGS
from .errors import MetadataError, SamlError, UnknownAcsUrl
from .metadata import AssertionConsumerService, ServiceProviderMetadata, parse_sp_metadata

__all__ = [
    "DEFAULT_ATTRIBUTE_NAMES",
    "ServiceProviderConfig",
    "AssertionConsumerService",
    "ServiceProviderMetadata",
    "ServiceProvider",
    "ServiceProviderRegistry",
    "check_provider",
]

# The posture attributes an assertion carries, internal key -> SAML Attribute Name.
DEFAULT_ATTRIBUTE_NAMES: Mapping[str, str] = {
    "device_id": "device_id",
    "device_compliant": "device_compliant",
    "posture_outcome": "posture_outcome",
    "posture_age_s": "posture_age_s",
}


class ServiceProviderConfig(BaseModel):
    """Our per-SP options (one entry of the ``saml.service_providers`` list in the config).

    Defaults are the strict ones: both the Response and the Assertion signed, no IdP-initiated
    login, requests verified whenever they carry a signature.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metadata_file: Path | None = Field(
        default=None, description="SP metadata XML file (entity id, ACS URLs, certificates)"
    )
    require_signed_requests: bool = Field(
        default=False,
        description="refuse unsigned AuthnRequests (also implied by AuthnRequestsSigned=true)",
    )
    sign_response: bool = True
    sign_assertion: bool = True
    encrypt_assertion: bool = Field(
        default=False, description="EncryptedAssertion to the SP's encryption certificate"
    )
    encryption_algorithm: Literal["aes256-gcm", "aes128-cbc"] = "aes256-gcm"
    nameid_format: str = Field(
        default=NAMEID_EMAIL, description="the NameID Format of our assertions"
    )
    nameid_attribute: str = Field(
        default="email", description="which user attribute the NameID value is taken from"
    )
    allow_idp_initiated: bool = False
    okta_factor: bool = Field(
        default=False,
        description="Okta 'factor only': the user comes from the signed request's Subject",
    )
    attribute_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ATTRIBUTE_NAMES))
    assertion_lifetime_s: int = Field(default=300, ge=30, le=3600)

    @model_validator(mode="after")
    def _coherent(self) -> ServiceProviderConfig:
        if not (self.sign_response or self.sign_assertion):
            raise ValueError("sign_response and sign_assertion cannot both be false")
        if self.okta_factor and not self.require_signed_requests:
            raise ValueError(
                "okta_factor: true needs require_signed_requests: true "
                "(the user is taken from the request's Subject, so the request must be signed)"
            )
        if self.nameid_format not in NAMEID_FORMATS:
            raise ValueError(f"nameid_format must be one of {', '.join(NAMEID_FORMATS)}")
        return self


@dataclass(frozen=True)
class ServiceProvider:
    """A registered SP: its metadata and our configuration for it."""

    metadata: ServiceProviderMetadata
    config: ServiceProviderConfig = field(default_factory=ServiceProviderConfig)

    @property
    def entity_id(self) -> str:
        """The SP's entity id (from its metadata)."""
        return self.metadata.entity_id

    @property
    def requires_signed_requests(self) -> bool:
        """Our config asks for it, or the SP's metadata promises ``AuthnRequestsSigned``."""
        return self.config.require_signed_requests or self.metadata.authn_requests_signed

    @property
    def signs_assertion(self) -> bool:
        """Per config, or forced by ``WantAssertionsSigned="true"`` in the metadata."""
        return self.config.sign_assertion or self.metadata.want_assertions_signed

    def default_acs(self) -> AssertionConsumerService:
        """The endpoint used when a request names none (isDefault, else first POST endpoint)."""
        usable = [a for a in self.metadata.acs if a.binding in SUPPORTED_ACS_BINDINGS]
        if not usable:
            raise UnknownAcsUrl(f"SP {self.entity_id!r} has no HTTP-POST AssertionConsumerService")
        for acs in usable:
            if acs.is_default:
                return acs
        return usable[0]

    def resolve_acs(
        self, *, url: str | None = None, index: int | None = None, binding: str | None = None
    ) -> AssertionConsumerService:
        """The ACS endpoint a request asks for, by EXACT URL or by index, else the default.

        Raises :class:`UnknownAcsUrl` for a URL or index not in the metadata, both given, or a
        binding we cannot answer on (we send Responses by HTTP-POST only).
        """
        if url is not None and index is not None:
            raise UnknownAcsUrl("AuthnRequest gives both AssertionConsumerServiceURL and Index")
        if binding is not None and binding not in SUPPORTED_ACS_BINDINGS:
            raise UnknownAcsUrl(f"ProtocolBinding {binding!r} is not supported (HTTP-POST only)")
        if url is not None:
            for acs in self.metadata.acs:
                if acs.url == url and acs.binding in SUPPORTED_ACS_BINDINGS:
                    return acs
            raise UnknownAcsUrl(
                f"AssertionConsumerServiceURL {url!r} is not an HTTP-POST endpoint "
                f"in the metadata of {self.entity_id!r}"
            )
        if index is not None:
            for acs in self.metadata.acs:
                if acs.index == index:
                    if acs.binding not in SUPPORTED_ACS_BINDINGS:
                        raise UnknownAcsUrl(
                            f"AssertionConsumerServiceIndex {index} of {self.entity_id!r} "
                            f"uses {acs.binding!r}; only HTTP-POST is supported"
                        )
                    return acs
            raise UnknownAcsUrl(
                f"AssertionConsumerServiceIndex {index} is not in the metadata of "
                f"{self.entity_id!r}"
            )
        return self.default_acs()

    def saml_attribute_name(self, key: str) -> str:
        """The SAML Attribute Name for an internal attribute key (itself when unmapped)."""
        return self.config.attribute_names.get(key, key)


class ServiceProviderRegistry:
    """The registered SPs by entity id; immutable once built."""

    def __init__(self, providers: Iterable[ServiceProvider] = ()) -> None:
        by_id: dict[str, ServiceProvider] = {}
        for sp in providers:
            if sp.entity_id in by_id:
                raise MetadataError(f"duplicate service provider entity id {sp.entity_id!r}")
            by_id[sp.entity_id] = sp
        self._by_id = by_id

    @classmethod
    def from_files(
        cls, entries: Sequence[tuple[Path, ServiceProviderConfig]]
    ) -> ServiceProviderRegistry:
        """Load each ``(metadata file, config)``; ``file: reason`` on the first bad one.

        Refuses unreadable or malformed files, files without an SPSSODescriptor or ACS, an
        ``encrypt_assertion`` SP without an encryption certificate, a signed-requests SP
        without a signing certificate, and duplicate entity ids (naming both files).
        """
        providers: list[ServiceProvider] = []
        seen: dict[str, Path] = {}
        for path, config in entries:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise MetadataError(f"{path}: cannot read SP metadata: {exc.strerror}") from exc
            try:
                metadata = parse_sp_metadata(data)
                sp = ServiceProvider(metadata=metadata, config=config)
                check_provider(sp)
            except SamlError as exc:  # any parser refusal is a malformed file
                raise MetadataError(f"{path}: {exc}") from exc
            if metadata.entity_id in seen:
                raise MetadataError(
                    f"{path}: entity id {metadata.entity_id!r} is already registered "
                    f"by {seen[metadata.entity_id]}"
                )
            seen[metadata.entity_id] = Path(path)
            providers.append(sp)
        return cls(providers)

    @classmethod
    def from_configs(
        cls, configs: Sequence[ServiceProviderConfig], *, base_dir: Path | None = None
    ) -> ServiceProviderRegistry:
        """The registry from SP configs that each name their ``metadata_file`` (a relative
        path is taken from ``base_dir``, e.g. the config file's directory)."""
        entries: list[tuple[Path, ServiceProviderConfig]] = []
        for position, config in enumerate(configs):
            if config.metadata_file is None:
                raise MetadataError(f"service_providers[{position}]: metadata_file is required")
            path = config.metadata_file
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            entries.append((path, config))
        return cls.from_files(entries)

    def get(self, entity_id: str) -> ServiceProvider | None:
        """The SP with this entity id, or None when it is not registered."""
        return self._by_id.get(entity_id)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._by_id

    def __iter__(self) -> Iterator[ServiceProvider]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def check_provider(sp: ServiceProvider) -> None:
    """Refuse an SP whose config cannot work with its metadata (raises MetadataError)."""
    if not any(a.binding == BINDING_HTTP_POST for a in sp.metadata.acs):
        raise MetadataError(
            f"SP {sp.entity_id!r} has no HTTP-POST AssertionConsumerService in its metadata"
        )
    if sp.config.encrypt_assertion and not sp.metadata.encryption_certificates:
        raise MetadataError(
            f"SP {sp.entity_id!r}: encrypt_assertion is on but its metadata has no "
            'KeyDescriptor use="encryption" (or unspecified use) certificate'
        )
    if sp.requires_signed_requests and not sp.metadata.signing_certificates:
        raise MetadataError(
            f"SP {sp.entity_id!r} requires signed requests but its metadata has no "
            "signing certificate"
        )
