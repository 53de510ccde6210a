//! OpenAPI schemas written by hand: for the request shapes whose `Deserialize` is hand-written
//! (one of several JSON types), and for the response envelope, named per choice type as OpenAI's
//! own document names them.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::*;

/// Schemas for the shapes the hand-written `Deserialize`s below accept (one of several JSON types).
macro_rules! one_of_schema {
    ($ty:ty, $description:literal, $($alt:ty),+) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                utoipa::openapi::schema::OneOfBuilder::new()
                    $(.item(<$alt as PartialSchema>::schema()))+
                    .description(Some($description))
                    .into()
            }
        }
        impl ToSchema for $ty {}
    };
}

one_of_schema!(Prompt, "A string, an array of strings, token ids, or arrays of token ids (one prompt per request).", String, Vec<String>, Vec<u32>, Vec<Vec<u32>>);
one_of_schema!(Stop, "One stop string or a list of them.", String, Vec<String>);
one_of_schema!(MessageContent, "Text, or an array of content parts.", String, Vec<ContentPart>);
one_of_schema!(TopLogprobs, "Token text → log probability, likeliest first.", std::collections::BTreeMap<String, f32>);

impl<C: EnvelopeChoice + ToSchema, U: UsageField> PartialSchema for Envelope<C, U> {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let mut object = ObjectBuilder::new()
            .property("id", string())
            .property("object", string().enum_values(Some([C::OBJECT])))
            .property("created", ObjectBuilder::new().schema_type(Type::Integer).description(Some("Unix seconds.")))
            .property("model", string())
            .property("choices", ArrayBuilder::new().items(Ref::from_schema_name(C::name())))
            .property("usage", Ref::from_schema_name(Usage::name()));
        for field in ["id", "object", "created", "model", "choices"] {
            object = object.required(field);
        }
        if U::ALWAYS {
            object = object.required("usage");
        }
        object.into()
    }
}

impl<C: EnvelopeChoice + ToSchema, U: UsageField> ToSchema for Envelope<C, U> {
    fn name() -> Cow<'static, str> {
        C::SCHEMA_NAME.into()
    }

    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((C::name().into(), C::schema()));
        C::schemas(out);
        out.push((Usage::name().into(), Usage::schema()));
        Usage::schemas(out);
    }
}
