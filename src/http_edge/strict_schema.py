"""Request bodies that refuse unknown fields say so in the OpenAPI document: `additionalProperties: false`.

msgspec Structs declared with `forbid_unknown_fields` (schemas.Strict) answer a 400 to a field they do not
know, but Litestar documents every Struct as open. A client generated from the document, or a fuzzer
generating valid bodies from it (schemathesis), would send extra fields the API then refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar.plugins import OpenAPISchemaPlugin

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition


class StrictStructSchema(OpenAPISchemaPlugin):
    """Litestar's own schema of a Struct that forbids unknown fields, closed to other properties."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        if field_definition.is_union or not field_definition.is_subclass_of(msgspec.Struct):
            return False
        info = msgspec.inspect.type_info(field_definition.type_)
        return isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        # The app's plugins come before Litestar's own, so the next one that takes the field is Litestar's.
        litestar_own = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self and schema_creator.plugin_supports_field(plugin, field_definition)
        )
        schema = litestar_own.to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
