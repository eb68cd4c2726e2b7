//! Writing Rust for one spec file, and the index module over all of them.

use std::fmt::Write as _;

use crate::spec::{Field, FieldType, Prim, Spec, StructDef, Versions};

const PRELUDE_NAMES: &[&str] = &[
    "Bytes",
    "BytesMut",
    "Uuid",
    "Codec",
    "Message",
    "Request",
    "Response",
    "ApiKey",
    "VersionRange",
    "DecodeError",
    "EncodeError",
    "String",
    "Vec",
    "Option",
    "Result",
    "Default",
    "Gen",
    "Arbitrary",
];

pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn field_ident(name: &str) -> String {
    let s = snake(name);
    match s.as_str() {
        "type" | "match" | "ref" | "self" | "mod" | "use" | "struct" | "enum" | "impl" | "fn"
        | "box" | "where" | "loop" | "in" | "as" | "move" | "static" | "const" | "trait"
        | "dyn" | "async" | "await" | "yield" | "final" | "override" => format!("r#{s}"),
        _ => s,
    }
}

/// Turns an `about` text into a doc comment body that rustdoc accepts.
fn doc(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for word in t.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.starts_with("http://") || word.starts_with("https://") {
            let w = word.trim_end_matches(['.', ',', ')']);
            let tail = &word[w.len()..];
            let _ = write!(out, "<{w}>{tail}");
            continue;
        }
        for c in word.chars() {
            match c {
                '[' => out.push_str("\\["),
                ']' => out.push_str("\\]"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '`' => out.push('\''),
                '*' => out.push_str("\\*"),
                '_' => out.push_str("\\_"),
                c => out.push(c),
            }
        }
    }
    out
}

fn wrap_doc(out: &mut String, indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + word.len() > 90 {
            let _ = writeln!(out, "{indent}/// {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}/// {line}");
    }
}

fn prim_type(p: Prim) -> &'static str {
    match p {
        Prim::Bool => "bool",
        Prim::Int8 => "i8",
        Prim::Int16 => "i16",
        Prim::Uint16 => "u16",
        Prim::Int32 => "i32",
        Prim::Uint32 => "u32",
        Prim::Int64 => "i64",
        Prim::Float64 => "f64",
        Prim::String => "String",
        Prim::Bytes | Prim::Records => "Bytes",
        Prim::Uuid => "Uuid",
    }
}

fn base_type(ty: &FieldType) -> String {
    match ty {
        FieldType::Prim(p) => prim_type(*p).to_string(),
        FieldType::Array(inner) => format!("Vec<{}>", base_type(inner)),
        FieldType::Struct(s) => s.clone(),
    }
}

fn is_option(f: &Field) -> bool {
    f.ty.can_be_null() && !f.nullable.is_empty()
}

fn rust_type(f: &Field) -> String {
    if is_option(f) {
        format!("Option<{}>", base_type(&f.ty))
    } else {
        base_type(&f.ty)
    }
}

fn default_expr(f: &Field, file: &str) -> Result<String, String> {
    let d = f.default.as_deref().map(str::trim);
    let opt = is_option(f);
    let wrap = |e: String| if opt { format!("Some({e})") } else { e };
    if opt && d == Some("null") {
        return Ok("None".into());
    }
    Ok(match &f.ty {
        FieldType::Prim(p) => match p {
            Prim::Bool => match d {
                None | Some("false") => "false".into(),
                Some("true") => "true".into(),
                Some(o) => return Err(format!("{file}.{}: bad bool default {o}", f.name)),
            },
            Prim::Int8 | Prim::Int16 | Prim::Uint16 | Prim::Int32 | Prim::Uint32 | Prim::Int64 => {
                match d {
                    None | Some("") => "0".into(),
                    Some(n) => {
                        let ok = n.strip_prefix("0x").map_or_else(
                            || n.parse::<i64>().is_ok(),
                            |h| i64::from_str_radix(h, 16).is_ok(),
                        );
                        if !ok {
                            return Err(format!("{file}.{}: bad int default {n}", f.name));
                        }
                        n.to_string()
                    }
                }
            }
            Prim::Float64 => match d {
                None => "0.0".into(),
                Some(n) => {
                    let v: f64 = n
                        .parse()
                        .map_err(|_| format!("{file}.{}: bad float default {n}", f.name))?;
                    format!("{v:?}")
                }
            },
            Prim::String => wrap(match d {
                None | Some("") => "String::new()".into(),
                Some(s) => format!("String::from({s:?})"),
            }),
            Prim::Bytes | Prim::Records => wrap("Bytes::new()".into()),
            Prim::Uuid => "Uuid::ZERO".into(),
        },
        FieldType::Array(inner) => wrap(format!("Vec::<{}>::new()", base_type(inner))),
        FieldType::Struct(s) => wrap(format!("{s}::default()")),
    })
}

/// Statements that encode `v` (a place expression of type `T`, or
/// `Option<T>` when `nullable`).
fn encode_stmt(ty: &FieldType, nullable: bool, v: &str, compact: &str, fname: &str) -> String {
    match ty {
        FieldType::Prim(p) => match (p, nullable) {
            (Prim::Bool, _) => format!("write_bool(buf, {v});"),
            (Prim::Int8, _) => format!("buf.put_i8({v});"),
            (Prim::Int16, _) => format!("buf.put_i16({v});"),
            (Prim::Uint16, _) => format!("buf.put_u16({v});"),
            (Prim::Int32, _) => format!("buf.put_i32({v});"),
            (Prim::Uint32, _) => format!("buf.put_u32({v});"),
            (Prim::Int64, _) => format!("buf.put_i64({v});"),
            (Prim::Float64, _) => format!("buf.put_f64({v});"),
            (Prim::Uuid, _) => format!("write_uuid(buf, &{v});"),
            (Prim::String, false) => format!("write_string(buf, &{v}, {compact}, {fname:?})?;"),
            (Prim::String, true) => {
                format!("write_nullable_string(buf, {v}.as_deref(), {compact}, {fname:?})?;")
            }
            (Prim::Bytes | Prim::Records, false) => {
                format!("write_bytes(buf, &{v}, {compact}, {fname:?})?;")
            }
            (Prim::Bytes | Prim::Records, true) => {
                format!("write_nullable_bytes(buf, {v}.as_deref(), {compact}, {fname:?})?;")
            }
        },
        FieldType::Array(inner) => {
            let body = encode_stmt(inner, false, "*e", compact, fname);
            if nullable {
                format!("write_nullable_array(buf, {v}.as_deref(), {compact}, {fname:?}, |buf, e| {{ {body} Ok(()) }})?;")
            } else {
                format!(
                    "write_array(buf, &{v}, {compact}, {fname:?}, |buf, e| {{ {body} Ok(()) }})?;"
                )
            }
        }
        FieldType::Struct(_) => {
            if nullable {
                format!("match &{v} {{ None => buf.put_i8(-1), Some(s) => {{ buf.put_i8(1); s.encode(buf, version)?; }} }}")
            } else {
                format!("{}.encode(buf, version)?;", v.trim_start_matches('*'))
            }
        }
    }
}

/// An expression of type `Result<T, DecodeError>` reading a non-null `T`.
fn decode_result(ty: &FieldType, compact: &str, fname: &str) -> String {
    match ty {
        FieldType::Prim(p) => match p {
            Prim::Bool => "read_bool(buf)".into(),
            Prim::Int8 => "read_i8(buf)".into(),
            Prim::Int16 => "read_i16(buf)".into(),
            Prim::Uint16 => "read_u16(buf)".into(),
            Prim::Int32 => "read_i32(buf)".into(),
            Prim::Uint32 => "read_u32(buf)".into(),
            Prim::Int64 => "read_i64(buf)".into(),
            Prim::Float64 => "read_f64(buf)".into(),
            Prim::Uuid => "read_uuid(buf)".into(),
            Prim::String => format!("read_string(buf, {compact}, {fname:?})"),
            Prim::Bytes | Prim::Records => format!("read_bytes(buf, {compact}, {fname:?})"),
        },
        FieldType::Array(inner) => {
            let elem = elem_reader(inner, compact, fname);
            format!("read_array(buf, {compact}, {fname:?}, {elem})")
        }
        FieldType::Struct(s) => format!("{s}::decode(buf, version)"),
    }
}

/// A function or closure reading one array element.
fn elem_reader(ty: &FieldType, compact: &str, fname: &str) -> String {
    match ty {
        FieldType::Prim(p) if !p.is_sized() => decode_result(ty, compact, fname)
            .trim_end_matches("(buf)")
            .to_string(),
        _ => format!("|buf: &mut Bytes| {}", decode_result(ty, compact, fname)),
    }
}

/// An expression of the field's Rust type reading it (with `?`).
fn decode_expr(f: &Field, within: Versions, compact: &str) -> String {
    let fname = f.name.as_str();
    if !is_option(f) {
        return format!("{}?", decode_result(&f.ty, compact, fname));
    }
    let nullable_read = match &f.ty {
        FieldType::Prim(Prim::String) => format!("read_nullable_string(buf, {compact})?"),
        FieldType::Prim(_) => format!("read_nullable_bytes(buf, {compact})?"),
        FieldType::Array(inner) => {
            let elem = elem_reader(inner, compact, fname);
            format!("read_nullable_array(buf, {compact}, {elem})?")
        }
        FieldType::Struct(s) => {
            format!("if read_struct_presence(buf)? {{ Some({s}::decode(buf, version)?) }} else {{ None }}")
        }
    };
    let present = f.versions.intersect(within);
    let cond = f.nullable.cond(present);
    match cond.as_str() {
        "true" => nullable_read,
        "false" => format!("Some({}?)", decode_result(&f.ty, compact, fname)),
        c => format!(
            "if {c} {{ {nullable_read} }} else {{ Some({}?) }}",
            decode_result(&f.ty, compact, fname)
        ),
    }
}

/// An expression producing a random value of the field's Rust type valid
/// at `version` (for the round-trip tests).
fn arbitrary_expr(ty: &FieldType) -> String {
    match ty {
        FieldType::Prim(p) => match p {
            Prim::Bool => "g.bool()".into(),
            Prim::Int8 => "g.i8()".into(),
            Prim::Int16 => "g.i16()".into(),
            Prim::Uint16 => "g.u16()".into(),
            Prim::Int32 => "g.i32()".into(),
            Prim::Uint32 => "g.u32()".into(),
            Prim::Int64 => "g.i64()".into(),
            Prim::Float64 => "g.f64()".into(),
            Prim::Uuid => "g.uuid()".into(),
            Prim::String => "g.string()".into(),
            Prim::Bytes | Prim::Records => "g.bytes()".into(),
        },
        FieldType::Array(inner) => format!("g.vec(|g| {})", arbitrary_expr(inner)),
        FieldType::Struct(s) => format!("{s}::arbitrary(g, version)"),
    }
}

struct Ctx<'a> {
    spec: &'a Spec,
}

impl Ctx<'_> {
    fn struct_within(&self, s: &StructDef) -> Versions {
        s.versions.intersect(self.spec.valid)
    }

    fn emit_struct(&self, out: &mut String, s: &StructDef, top: bool) -> Result<(), String> {
        let spec = self.spec;
        let within = self.struct_within(s);
        let flex = spec.flexible.intersect(within);
        let flexible_cond = flex.cond(within);
        let mut idents = std::collections::BTreeSet::new();

        // -- the struct
        if top {
            let what = match spec.kind.as_str() {
                "request" => "request",
                "response" => "response",
                "header" => "header",
                _ => "data schema",
            };
            let _ = writeln!(
                out,
                "/// The `{}` {what}: versions {}-{}{}.",
                spec.name,
                spec.valid.min,
                spec.valid.max,
                if spec.flexible.is_empty() {
                    String::new()
                } else {
                    format!(", flexible from {}", spec.flexible.min)
                }
            );
        } else if s.about.trim().is_empty() {
            let _ = writeln!(out, "/// `{}`, part of `{}`.", s.name, spec.name);
        } else {
            wrap_doc(out, "", &doc(&s.about));
        }
        let _ = writeln!(out, "#[derive(Debug, Clone, PartialEq)]");
        let _ = writeln!(out, "pub struct {} {{", s.name);
        for f in &s.fields {
            let ident = field_ident(&f.name);
            if !idents.insert(ident.clone()) || ident == "unknown_tagged_fields" {
                return Err(format!("{}.{}: field name collision", spec.file, s.name));
            }
            let mut about = doc(&f.about);
            if about.is_empty() {
                about = format!("`{}`.", f.name);
            }
            let present = f.versions.intersect(within);
            let mut notes = vec![if present.is_empty() {
                "never sent".to_string()
            } else if present.max == within.max {
                format!("versions {}+", present.min)
            } else {
                format!("versions {}-{}", present.min, present.max)
            }];
            if let Some(tag) = f.tag {
                notes.push(format!("tagged field {tag}"));
            }
            if is_option(f) {
                let n = f.nullable.intersect(present);
                if !n.is_empty() {
                    notes.push(if n.max == within.max {
                        format!("nullable {}+", n.min)
                    } else {
                        format!("nullable {}-{}", n.min, n.max)
                    });
                }
            }
            wrap_doc(out, "    ", &format!("{about} ({}.)", notes.join(", ")));
            let _ = writeln!(out, "    pub {ident}: {},", rust_type(f));
        }
        let _ = writeln!(
            out,
            "    /// Tagged fields this build does not know, kept to be sent on unchanged."
        );
        let _ = writeln!(out, "    pub unknown_tagged_fields: UnknownTaggedFields,");
        let _ = writeln!(out, "}}\n");

        // -- Default, with the spec's defaults
        let _ = writeln!(out, "impl Default for {} {{", s.name);
        let _ = writeln!(out, "    fn default() -> Self {{");
        let _ = writeln!(out, "        {} {{", s.name);
        for f in &s.fields {
            let _ = writeln!(
                out,
                "            {}: {},",
                field_ident(&f.name),
                default_expr(f, &spec.file)?
            );
        }
        let _ = writeln!(out, "            unknown_tagged_fields: Vec::new(),");
        let _ = writeln!(out, "        }}\n    }}\n}}\n");

        // -- Codec
        let (enc_name, dec_name) = if top {
            ("encode_body", "decode_body")
        } else {
            ("encode", "decode")
        };
        let mut enc = String::new();
        let mut dec = String::new();
        let mut tagged_enc = String::new();
        let mut tagged_dec = String::new();
        let mut arb = String::new();
        for f in &s.fields {
            let ident = field_ident(&f.name);
            let present = f.versions.intersect(within);
            let tagged = f.tagged.intersect(present).intersect(flex);
            let present_cond = present.cond(within);
            let opt = is_option(f);
            if f.tag.is_some() && tagged != present {
                return Err(format!(
                    "{}.{}: tagged field with versions outside its tagged versions",
                    spec.file, f.name
                ));
            }
            let compact = match f.flexible_override {
                Some(o) => match o.intersect(flex).cond(within).as_str() {
                    "false" => "false".to_string(),
                    "true" => "true".to_string(),
                    c => format!("({c})"),
                },
                None => "compact".to_string(),
            };
            let default = default_expr(f, &spec.file)?;
            let v = format!("self.{ident}");
            // Null check for fields that are nullable only in some versions.
            let null_check = if opt {
                match f.nullable.cond(present).as_str() {
                    "true" => String::new(),
                    c => format!(
                        "if self.{ident}.is_none() && !({c}) {{ return Err(EncodeError::NullNotAllowed {{ field: {:?}, version }}); }}\n",
                        f.name
                    ),
                }
            } else {
                String::new()
            };
            let absent_check = if f.ignorable {
                String::new()
            } else {
                format!(
                    "if self.{ident} != {default} {{ return Err(EncodeError::FieldNotInVersion {{ field: {:?}, version }}); }}",
                    f.name
                )
            };
            if let Some(tag) = f.tag {
                let body = encode_stmt(&f.ty, opt, &v, "true", &f.name);
                let cond = tagged.cond(within);
                let _ = writeln!(
                    tagged_enc,
                    "if {cond} && self.{ident} != {default} {{ {null_check}tagged.field({tag}, |buf| {{ {body} Ok(()) }})?; }}"
                );
                if !absent_check.is_empty() && cond != "true" {
                    let _ = writeln!(enc, "if !({cond}) {{ {absent_check} }}");
                }
                let _ = writeln!(
                    tagged_dec,
                    "{tag} if {cond} => {{ this.{ident} = {}; Ok(true) }}",
                    decode_expr(f, present, "true")
                );
            } else {
                let body = encode_stmt(&f.ty, opt, &v, &compact, &f.name);
                match present_cond.as_str() {
                    "true" => {
                        let _ = writeln!(enc, "{null_check}{body}");
                    }
                    "false" => {
                        if !absent_check.is_empty() {
                            let _ = writeln!(enc, "{absent_check}");
                        }
                    }
                    c => {
                        if absent_check.is_empty() {
                            let _ = writeln!(enc, "if {c} {{ {null_check}{body} }}");
                        } else {
                            let _ = writeln!(
                                enc,
                                "if {c} {{ {null_check}{body} }} else {{ {absent_check} }}"
                            );
                        }
                    }
                }
                let expr = decode_expr(f, present, &compact);
                match present_cond.as_str() {
                    "true" => {
                        let _ = writeln!(dec, "this.{ident} = {expr};");
                    }
                    "false" => {}
                    c => {
                        let _ = writeln!(dec, "if {c} {{ this.{ident} = {expr}; }}");
                    }
                }
            }
            // Random generation for tests.
            if present_cond != "false" {
                let mut val = arbitrary_expr(&f.ty);
                if opt {
                    let nc = f.nullable.cond(present);
                    val = if nc == "false" {
                        format!("Some({val})")
                    } else {
                        format!("if ({nc}) && g.chance(5) {{ None }} else {{ Some({val}) }}")
                    };
                }
                let _ = writeln!(arb, "if {present_cond} {{ this.{ident} = {val}; }}");
            }
        }
        let has_flex = flexible_cond != "false";
        let uses_compact = enc.contains("compact") || dec.contains("compact");
        let _ = writeln!(out, "impl {} {{", s.name);
        // encode
        let doc_enc = if top {
            "Encodes the body (no header) at `version`, which the caller checked."
        } else {
            "Encodes this struct at the enclosing message's `version`."
        };
        let doc_dec = if top {
            "Decodes the body (no header) at `version`, which the caller checked."
        } else {
            "Decodes this struct at the enclosing message's `version`."
        };
        let vis = if top { "fn" } else { "pub fn" };
        let _ = writeln!(out, "    /// {doc_enc}");
        let _ = writeln!(
            out,
            "    {vis} {enc_name}(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError> {{"
        );
        if has_flex {
            let _ = writeln!(out, "        let flexible = {flexible_cond};");
        }
        if uses_compact {
            let c = if has_flex { "flexible" } else { "false" };
            let _ = writeln!(out, "        let compact = {c};");
        }
        out.push_str(&enc);
        if has_flex {
            if tagged_enc.is_empty() {
                let _ = writeln!(
                    out,
                    "if flexible {{ write_unknown_tagged_fields(buf, &self.unknown_tagged_fields)?; }}"
                );
            } else {
                let _ = writeln!(
                    out,
                    "if flexible {{ let mut tagged = TaggedFieldsWriter::new();\n{tagged_enc} tagged.finish(buf, &self.unknown_tagged_fields)?; }}"
                );
            }
            let _ = writeln!(out, "else if !self.unknown_tagged_fields.is_empty() {{ return Err(EncodeError::FieldNotInVersion {{ field: \"unknown tagged fields\", version }}); }}");
        } else {
            let _ = writeln!(out, "if !self.unknown_tagged_fields.is_empty() {{ return Err(EncodeError::FieldNotInVersion {{ field: \"unknown tagged fields\", version }}); }}");
        }
        let _ = writeln!(out, "        let _ = version;\n        Ok(())\n    }}\n");
        // decode
        let _ = writeln!(out, "    /// {doc_dec}");
        let _ = writeln!(
            out,
            "    {vis} {dec_name}(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError> {{"
        );
        if has_flex {
            let _ = writeln!(out, "        let flexible = {flexible_cond};");
        }
        if uses_compact {
            let c = if has_flex { "flexible" } else { "false" };
            let _ = writeln!(out, "        let compact = {c};");
        }
        let _ = writeln!(out, "        let mut this = Self::default();");
        out.push_str(&dec);
        if has_flex {
            if tagged_dec.is_empty() {
                let _ = writeln!(out, "if flexible {{ read_tagged_fields(buf, &mut this.unknown_tagged_fields, |_, _| Ok(false))?; }}");
            } else {
                let _ = writeln!(
                    out,
                    "if flexible {{ let mut unknown = Vec::new(); read_tagged_fields(buf, &mut unknown, |tag, buf| match tag {{\n{tagged_dec} _ => Ok(false) }})?; this.unknown_tagged_fields = unknown; }}"
                );
            }
        }
        let _ = writeln!(out, "        let _ = version;\n        Ok(this)\n    }}");
        let _ = writeln!(out, "}}\n");

        // Codec
        let _ = writeln!(out, "impl Codec for {} {{", s.name);
        if top {
            let _ = writeln!(out, "    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError> {{");
            let _ = writeln!(out, "        if !Self::VERSIONS.contains(version) {{ return Err(EncodeError::UnsupportedVersion {{ message: Self::NAME, version }}); }}");
            let _ = writeln!(out, "        self.encode_body(buf, version)\n    }}");
            let _ = writeln!(
                out,
                "    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError> {{"
            );
            let _ = writeln!(out, "        if !Self::VERSIONS.contains(version) {{ return Err(DecodeError::UnsupportedVersion {{ message: Self::NAME, version }}); }}");
            let _ = writeln!(out, "        Self::decode_body(buf, version)\n    }}");
        } else {
            let _ = writeln!(out, "    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError> {{ {}::encode(self, buf, version) }}", s.name);
            let _ = writeln!(out, "    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError> {{ {}::decode(buf, version) }}", s.name);
        }
        let _ = writeln!(out, "}}\n");

        // Arbitrary (tests)
        let _ = writeln!(out, "#[cfg(test)]\nimpl Arbitrary for {} {{", s.name);
        let _ = writeln!(
            out,
            "    fn arbitrary(g: &mut Gen, version: i16) -> Self {{"
        );
        if has_flex {
            let _ = writeln!(out, "        let flexible = {flexible_cond};");
        }
        let _ = writeln!(out, "        let mut this = Self::default();");
        out.push_str(&arb);
        if has_flex {
            let _ = writeln!(out, "if flexible && g.chance(4) {{ this.unknown_tagged_fields.push(g.unknown_tagged_field()); }}");
        }
        let _ = writeln!(out, "        let _ = version;\n        this\n    }}\n}}\n");
        Ok(())
    }
}

pub fn module_name(spec: &Spec) -> String {
    snake(&spec.file)
}

/// The Rust source of one spec's module.
pub fn emit_spec(spec: &Spec) -> Result<String, String> {
    for s in &spec.structs {
        if PRELUDE_NAMES.contains(&s.name.as_str()) {
            return Err(format!(
                "{}: struct name {} shadows a prelude name",
                spec.file, s.name
            ));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by sansa-codegen from {}.json. Do not edit.\n",
        spec.file
    );
    let _ = writeln!(out, "//! `{}` (Kafka's `{}.json`).\n", spec.name, spec.file);
    let _ = writeln!(out, "#[allow(unused_imports)]\nuse super::prelude::*;\n");
    let ctx = Ctx { spec };
    for (i, s) in spec.structs.iter().enumerate() {
        ctx.emit_struct(&mut out, s, i == 0)?;
    }
    // Message trait for the top-level struct.
    let top = &spec.structs[0];
    let _ = writeln!(out, "impl Message for {} {{", top.name);
    let _ = writeln!(out, "    const NAME: &'static str = {:?};", spec.name);
    let _ = writeln!(
        out,
        "    const VERSIONS: VersionRange = VersionRange::new({}, {});",
        spec.valid.min, spec.valid.max
    );
    let fl = if spec.flexible.is_empty() {
        "VersionRange::NONE".to_string()
    } else {
        format!(
            "VersionRange::new({}, {})",
            spec.flexible.min, spec.flexible.max
        )
    };
    let _ = writeln!(out, "    const FLEXIBLE_VERSIONS: VersionRange = {fl};");
    let dep = if spec.deprecated.is_empty() {
        "VersionRange::NONE".to_string()
    } else {
        format!(
            "VersionRange::new({}, {})",
            spec.deprecated.min, spec.deprecated.max
        )
    };
    let _ = writeln!(out, "    const DEPRECATED_VERSIONS: VersionRange = {dep};");
    let _ = writeln!(out, "}}\n");
    Ok(out)
}
