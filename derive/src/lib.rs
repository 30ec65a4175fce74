//! `#[derive(Kind)]`: a struct with named fields becomes a kind of entity in a
//! centrum game's state, and gets one typed field handle per field (`Player::SCORE`).
//! Use it through `centrum` or `centrum-app`, which re-export it.

use proc_macro::TokenStream;
use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Ident, LitInt, LitStr, Type, parse_macro_input};

/// A kind has at most this many fields: a patch names changed fields with a 64-bit mask.
const MAX_FIELDS: usize = 64;

/// Derives `Kind` for a struct with named fields.
///
/// - The kind's name is the struct's name in snake case (`PowerUp` is `power_up`);
///   `#[kind(name = "...")]` on the struct sets another.
/// - Each field becomes a field of the kind, in order, with the field type its Rust type
///   maps to (`f64` is `f64`, `u32` is `uint`, `String` is `str`, ...).
///   `#[field(fixed = 100)]` on an `f64` or `f32` makes it fixed-point with precision
///   1/100, sent as a small integer; `#[field(name = "...")]` renames it on the wire.
/// - Each field gets an associated constant, its name in capitals, that is the typed
///   handle to read and set it: `state.set(player, Player::SCORE, 3)`.
#[proc_macro_derive(Kind, attributes(kind, field))]
pub fn derive_kind(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One field of the kind, as the attributes and the struct declare it.
struct KindField<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    wire_name: String,
    fixed: Option<u32>,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "a Kind cannot be generic: its fields are its wire format",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            ident,
            "Kind can be derived for a struct with named fields only",
        ));
    };
    let named = match &data.fields {
        Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
        Fields::Unit => Vec::new(),
        Fields::Unnamed(_) => {
            return Err(syn::Error::new_spanned(
                ident,
                "Kind needs named fields: each becomes a named field of the kind",
            ));
        }
    };
    if named.len() > MAX_FIELDS {
        return Err(syn::Error::new_spanned(
            ident,
            format!(
                "a kind has at most {MAX_FIELDS} fields; this one has {}",
                named.len()
            ),
        ));
    }
    let mut kind_name = snake_case(&ident.to_string());
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("kind")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                kind_name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta.error("unknown kind attribute; expected `name = \"...\"`"))
            }
        })?;
    }
    let mut fields = Vec::new();
    for f in named {
        // Named fields always have an ident.
        let Some(field_ident) = f.ident.as_ref() else {
            continue;
        };
        let mut field = KindField {
            ident: field_ident,
            ty: &f.ty,
            wire_name: field_ident.unraw().to_string(),
            fixed: None,
        };
        for attr in f.attrs.iter().filter(|a| a.path().is_ident("field")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("fixed") {
                    let scale: LitInt = meta.value()?.parse()?;
                    let value: u32 = scale.base10_parse()?;
                    if value == 0 {
                        return Err(syn::Error::new_spanned(
                            scale,
                            "the scale must be at least 1",
                        ));
                    }
                    field.fixed = Some(value);
                    Ok(())
                } else if meta.path.is_ident("name") {
                    field.wire_name = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown field attribute; expected `fixed = SCALE` or `name = \"...\"`",
                    ))
                }
            })?;
        }
        fields.push(field);
    }

    let path = crate_path()?;
    let private = quote!(#path::__private);
    let defs = fields.iter().map(|f| {
        let (name, ty) = (&f.wire_name, f.ty);
        match f.fixed {
            Some(scale) => quote!(#private::FieldDef::fixed(#name, #scale)),
            None => quote!(#private::FieldDef::new(
                #name,
                <#ty as #private::FieldValue>::FIELD_TYPE
            )),
        }
    });
    let values = fields.iter().enumerate().map(|(i, f)| {
        let field = f.ident;
        quote!(#private::FieldValue::into_value(self.#field, fields.get(#i)?)?)
    });
    let vis = &input.vis;
    let handles = fields.iter().enumerate().map(|(i, f)| {
        let konst = format_ident!("{}", f.ident.unraw().to_string().to_uppercase());
        let ty = f.ty;
        // The number of fields is at most 64, so the index fits a u8.
        let index = u8::try_from(i).unwrap_or(u8::MAX);
        let doc = format!("The typed handle of field `{}`.", f.wire_name);
        quote! {
            #[doc = #doc]
            #vis const #konst: #private::Field<#ident, #ty> = #private::Field::new(#index);
        }
    });
    let fixed_checks = fields.iter().filter(|f| f.fixed.is_some()).map(|f| {
        let ty = f.ty;
        quote_spanned_check(ty, &private)
    });
    Ok(quote! {
        impl #private::Kind for #ident {
            const NAME: &'static str = #kind_name;

            fn fields() -> ::std::vec::Vec<#private::FieldDef> {
                ::std::vec![#(#defs),*]
            }

            #[allow(unused_variables)]
            fn into_values(
                self,
                fields: &[#private::FieldDef],
            ) -> ::std::option::Option<::std::vec::Vec<#private::Value>> {
                ::std::option::Option::Some(::std::vec![#(#values),*])
            }
        }

        #[allow(dead_code)]
        impl #ident {
            #(#handles)*
        }

        #(#fixed_checks)*
    })
}

/// A compile-time check that a fixed-point field has a type that can be fixed-point.
fn quote_spanned_check(ty: &Type, private: &Tokens) -> Tokens {
    quote::quote_spanned! {syn::spanned::Spanned::span(ty)=>
        const _: fn() = || {
            fn fixed_point_fields_are_f64_or_f32<T: #private::FixedPoint>() {}
            fixed_point_fields_are_f64_or_f32::<#ty>();
        };
    }
}

/// The crate the game reaches the API through: `centrum` (the whole platform) or
/// `centrum-app` (the API alone), under whatever name the game's Cargo.toml gives it.
fn crate_path() -> syn::Result<Tokens> {
    let found = crate_name("centrum")
        .or_else(|_| crate_name("centrum-app"))
        .map_err(|e| {
            syn::Error::new(
                Span::call_site(),
                format!("#[derive(Kind)] needs `centrum` or `centrum-app` as a dependency: {e}"),
            )
        })?;
    Ok(match found {
        // Inside the crate itself (its doctests included), which names itself with
        // `extern crate self as ...`.
        FoundCrate::Itself => match crate_name("centrum-app") {
            Ok(_) => quote!(::centrum_app),
            Err(_) => quote!(::centrum),
        },
        FoundCrate::Name(name) => {
            let ident = Ident::new(&name, Span::call_site());
            quote!(::#ident)
        }
    })
}

/// `PowerUp` -> `power_up`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
